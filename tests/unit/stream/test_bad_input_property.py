"""Property: malformed events of every kind mixed into valid traffic on several partitions, on both topics, through
the worker's own path (decoding, event-time rules, pipeline on the in-memory store): every valid transaction is
decided exactly once, every bad event reaches the dead letters with a reason, nothing is held back, nothing
raises."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiokafka import TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudstream.stream.batch_loop import split_released
from fraudstream.stream.core.batch import BatchPipeline
from fraudstream.stream.event_time import EventTimeAligner, decode_event
from fraudstream.stream.model_watch import ActiveModel
from fraudstream.stream.settings import StreamSettings
from fraudstream.stream.state.memory import InMemoryStateStore
from fraudstream.stream.types import RawEvent

TX_TOPIC, LABEL_TOPIC = "tx", "labels"
START_S = 1_522_540_800.0  # 2018-04-01
#: Bad transaction kinds: each builds the wire bytes from a valid transaction's fields.
BAD_KINDS = ["invalid_json", "not_utf8", "not_object", "missing_field", "wrong_type", "null_value", "nan_amount",
             "inf_amount", "huge_amount", "negative_amount", "far_past", "far_future", "future_of_wall",
             "huge_string", "other_content"]
GOOD_KINDS = ["valid"] * 8 + ["extra_field", "same_content_again"]
BAD_LABELS = [b"{", b"\xff\xfe", b"[1]", b"null", b'{"transaction_id": 1}',
              b'{"transaction_id": 1, "terminal_id": 2, "customer_id": 3, "timestamp": "x", "fraud": true, '
              b'"known_at": 1.0}']


def wire(kind: str, tx: dict) -> bytes:
    """Wire bytes of a transaction of the given kind."""
    d = dict(tx)
    if kind == "invalid_json":
        return json.dumps(d).encode()[:-3]
    if kind == "not_utf8":
        return b"\xff\xfe" + json.dumps(d).encode()
    if kind == "not_object":
        return json.dumps([d]).encode()
    if kind == "missing_field":
        del d["terminal_id"]
    elif kind == "wrong_type":
        d["customer_id"] = "abc"
    elif kind == "null_value":
        d["amount"] = None
    elif kind in ("nan_amount", "inf_amount"):
        return json.dumps(d).encode().replace(str(d["amount"]).encode(), b"NaN" if kind == "nan_amount"
                                              else b"Infinity")
    elif kind == "huge_amount":
        d["amount"] = 1e308
    elif kind == "negative_amount":
        d["amount"] = -d["amount"]
    elif kind == "far_past":
        d["timestamp"] = "1970-01-02T00:00:00Z"
    elif kind == "far_future":
        d["timestamp"] = "9999-12-31T23:59:59Z"
    elif kind == "future_of_wall":
        d["timestamp"] = 4_000_000_000.0  # 2096: inside the sane range, far ahead of the wall clock
    elif kind == "huge_string":
        d["terminal_id"] = "7" * 100_000
    elif kind == "extra_field":
        d["channel"] = "web"
    return json.dumps(d).encode()


@pytest.fixture(scope="module")
def model(tiny_bundle):
    return ActiveModel.load(tiny_bundle.root)


partitions_strategy = st.lists(
    st.lists(st.tuples(st.sampled_from(GOOD_KINDS + BAD_KINDS), st.floats(1.0, 900.0)), min_size=1, max_size=40),
    min_size=1, max_size=3)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=partitions_strategy, bad_labels=st.lists(st.sampled_from(BAD_LABELS), max_size=4),
       batch=st.integers(5, 60))
def test_every_valid_event_is_decided_once_and_every_bad_one_is_a_dead_letter(model, drawn, bad_labels, batch):
    worker = StreamSettings(partition_end_grace_s=0.0)  # every record is fetched at once: none arrives later
    aligner: EventTimeAligner[TopicPartition, RawEvent] = EventTimeAligner(rules=worker.event_time_rules())
    next_id = 1
    valid_ids: set[int] = set()
    bad = 0
    for p, items in enumerate(drawn):
        tp = TopicPartition(TX_TOPIC, p)
        # this partition's valid transactions so far, for "same content again" and "other content": a copy keeps
        # its original's event time, so on another partition it could be released first and be the one decided
        seen: list[dict] = []
        t = START_S
        events, times = [], []
        for offset, (kind, gap) in enumerate(items):
            t += gap
            if kind == "same_content_again" and seen:
                tx = seen[-1]
            elif kind == "other_content" and seen:
                tx = dict(seen[-1], amount=seen[-1]["amount"] + 1.0)
            else:
                tx = {"transaction_id": next_id, "timestamp": t, "customer_id": 1 + next_id % 7,
                      "terminal_id": 1 + next_id % 5, "amount": round(5.0 + next_id % 90, 2)}
                next_id += 1
                kind = "valid" if kind in ("same_content_again", "other_content") else kind
            value = wire(kind, tx)
            if kind in BAD_KINDS:
                bad += 1
            else:
                valid_ids.add(tx["transaction_id"])
                if kind == "valid":
                    seen.append(tx)
            decoded, event_time = decode_event(value, worker.event_time_range())
            events.append(RawEvent(TX_TOPIC, p, offset, 1_700_000_000_000, value, b"k", decoded))
            times.append(event_time)
        aligner.add(tp, events, times)
    labels = [RawEvent(LABEL_TOPIC, 0, i, 1_700_000_000_000, v) for i, v in enumerate(bad_labels)]
    store = InMemoryStateStore()
    pipeline = BatchPipeline(store, lambda: model, TX_TOPIC, LABEL_TOPIC, time_range=worker.event_time_range())
    at_end = {TopicPartition(TX_TOPIC, p): True for p in range(len(drawn))}

    async def drain():
        decided: dict[int, set[bytes]] = {}
        letters: list[dict] = []
        pending_labels = list(labels)
        rounds = 0
        while aligner.total_buffered or pending_labels:
            rounds += 1
            assert rounds < 10_000, "the stream is held"
            released = aligner.take_released(at_end, batch)
            assert released or not aligner.total_buffered, "records held back with every partition at its end"
            events, too_early, _late = split_released(released)
            outcome = await pipeline.process(pending_labels + events)
            pending_labels = []
            for _, raw in outcome.decisions:
                record = json.loads(raw)
                decided.setdefault(record["transaction_id"], set()).add(raw)
            letters += [json.loads(v) for _, v in list(outcome.dlq) + too_early]
        return decided, letters

    decided, letters = asyncio.run(drain())
    assert set(decided) == valid_ids, "a valid transaction was not decided (or a bad one was)"
    assert all(len(v) == 1 for v in decided.values()), "a transaction got two different decisions"
    assert len(letters) == bad + len(bad_labels), "a bad event did not reach the dead letters (or a good one did)"
    assert all(d["reason_code"] and d["reason"] for d in letters)
    assert aligner.total_buffered == 0
