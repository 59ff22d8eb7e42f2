"""The same transaction id with other content is a dead letter ("conflict"), never given the first one's decision;
the same content stays a duplicate (in one batch and across batches, in memory and on a real Redis)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid

import pytest

from fraudstream.detectors.schema import Transaction
from fraudstream.stream.core.batch import BatchPipeline
from fraudstream.stream.core.parse import REASON_CONFLICT
from fraudstream.stream.core.plan import same_content
from fraudstream.stream.metrics import WorkerMetrics
from fraudstream.stream.model_watch import ActiveModel
from fraudstream.stream.state.memory import InMemoryStateStore
from fraudstream.stream.state.redis_store import RedisStateStore
from fraudstream.stream.types import DecisionRecord, RawEvent

TX_TOPIC, LABEL_TOPIC = "tx", "labels"
BASE = Transaction(transaction_id=77, timestamp=1_522_600_000.0, customer_id=3, terminal_id=9, amount=42.5)
CHANGES = [dict(amount=42.51), dict(customer_id=4), dict(terminal_id=10), dict(timestamp=1_522_600_001.0)]


def raw(tx: Transaction, offset: int) -> RawEvent:
    return RawEvent(TX_TOPIC, 0, offset, 1_700_000_000_000, tx.to_json(), str(tx.customer_id).encode())


def make_store(kind: str, redis_url: str):
    if kind == "redis":
        return RedisStateStore.from_url(redis_url, f"c{uuid.uuid4().hex[:8]}", LABEL_TOPIC, 3600, 3600)
    return InMemoryStateStore()


@pytest.mark.parametrize("store_kind", ["memory", "redis"])
@pytest.mark.parametrize("change", CHANGES, ids=[next(iter(c)) for c in CHANGES])
def test_other_content_under_a_decided_id_is_a_conflict_and_the_same_content_a_duplicate(
        tiny_bundle, redis_server, store_kind, change):
    model = ActiveModel.load(tiny_bundle.root)
    store = make_store(store_kind, redis_server.url)
    pipeline = BatchPipeline(store, lambda: model, TX_TOPIC, LABEL_TOPIC)
    metrics = WorkerMetrics()
    other = dataclasses.replace(BASE, **change)

    async def scenario():
        first = await pipeline.process([raw(BASE, 0), raw(other, 1), raw(BASE, 2)])  # in one batch
        later = await pipeline.process([raw(other, 3), raw(BASE, 4)])  # against the stored decision
        if isinstance(store, RedisStateStore):
            await store.close()
        return first, later

    first, later = asyncio.run(scenario())
    for outcome in (first, later):
        metrics.count_outcome(outcome)
    decided = DecisionRecord.from_json(first.decisions[0][1])
    assert decided.transaction_id == BASE.transaction_id and decided.amount == BASE.amount
    assert len(first.decisions) == 2 and first.decisions[1] == first.decisions[0] and first.duplicates == 1
    assert len(later.decisions) == 1 and later.decisions[0] == first.decisions[0] and later.duplicates == 1
    assert len(first.broker_ts_s) == len(first.decisions) and len(later.broker_ts_s) == len(later.decisions)
    for outcome, offset in ((first, 1), (later, 3)):
        assert outcome.dlq_reasons == [REASON_CONFLICT]
        letter = json.loads(outcome.dlq[0][1])
        assert letter["reason_code"] == REASON_CONFLICT and letter["offset"] == offset
        assert letter["field"] == "transaction_id" and "77" in letter["reason"]
    assert metrics.dlq.labels(reason=REASON_CONFLICT)._value.get() == 2


def test_same_content_compares_every_field_the_decision_records():
    stored = json.dumps({"transaction_id": 77, "customer_id": 3, "terminal_id": 9, "amount": 42.5,
                         "event_timestamp": 1_522_600_000.0}).encode()
    assert same_content(BASE, stored)
    assert not any(same_content(dataclasses.replace(BASE, **change), stored) for change in CHANGES)
    assert same_content(BASE, b"not json")  # an unreadable stored decision is answered as before
