"""Rebuilding the state from the topics' records (the pure part of ``fraudstream state rebuild``).

A live run is simulated with the worker core (``BatchPipeline`` on the in-memory store, a small trained model):
transactions on 3 partitions, chargeback labels on 2, decisions collected as the decisions topic would hold them.
The state rebuilt from those records must let the second part of the stream be decided exactly as the live state
does (decision bytes equal), re-delivered and re-sent transactions answered with their original decisions; an
empty state must not (or the comparison would prove nothing).  A small synthetic stream checks which records count.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math

import numpy as np
import pytest

from fraudstream.detectors.cascade.review_budget import DayCases
from fraudstream.detectors.features.definition import DAY_S, FeatureConfig
from fraudstream.detectors.features.online import (
    STATE_TRIM_SLACK_S,
    CustomerHistory,
    IncrementalFeatures,
    TerminalHistory,
)
from fraudstream.detectors.schema import LabelEvent, Transaction, TransactionBatch
from fraudstream.stream.core.batch import BatchPipeline
from fraudstream.stream.core.rebuild import StateRebuild, feature_window_s
from fraudstream.stream.model_watch import ActiveModel
from fraudstream.stream.state.memory import InMemoryStateStore
from fraudstream.stream.types import RawEvent

TX, LABELS, DECISIONS, DLQ = "tx", "labels", "decisions", "dlq"
TX_PARTITIONS, LABEL_PARTITIONS = 3, 2
BATCH_ROWS = 100
LABEL_DELAY_S, LABEL_LEAD_S = 7 * DAY_S, DAY_S
CLOCK_S = 1_700_000_000.0
DECISION_TTL_S = 14 * DAY_S
FIRST_PART = 2500
#: Records of partition 0 decided before the "crash" but not committed (re-delivered after the restart).
UNCOMMITTED = 20
RESENT = 10


def _offsets():
    return {key: itertools.count() for key in [(TX, p) for p in range(TX_PARTITIONS)]
            + [(LABELS, p) for p in range(LABEL_PARTITIONS)] + [(DECISIONS, p) for p in range(TX_PARTITIONS)]}


def tx_record(tx: Transaction, offsets) -> RawEvent:
    p = tx.customer_id % TX_PARTITIONS
    return RawEvent(TX, p, next(offsets[TX, p]), int(tx.timestamp * 1000), tx.to_json(), str(tx.customer_id).encode())


def label_record(label: LabelEvent, offsets) -> RawEvent:
    p = label.terminal_id % LABEL_PARTITIONS
    return RawEvent(LABELS, p, next(offsets[LABELS, p]), 0, label.to_json(), str(label.terminal_id).encode())


def stream_batches(frame, offsets) -> list[list[RawEvent]]:
    """The worker's micro-batches of a replay: each holds the labels sent by its last transaction's time (a label
    goes out a day before its known_at, as ``fraudstream replay`` sends it), then ``BATCH_ROWS`` transactions."""
    batch = TransactionBatch.from_frame(frame)
    fraud = frame["TX_FRAUD"].to_numpy()
    txs = [Transaction(int(batch.transaction_id[i]), float(batch.timestamp[i]), int(batch.customer_id[i]),
                       int(batch.terminal_id[i]), float(batch.amount[i])) for i in range(len(batch))]
    pending: list[tuple[float, int, LabelEvent]] = []
    out = []
    for start in range(0, len(txs), BATCH_ROWS):
        chunk = txs[start:start + BATCH_ROWS]
        events = []
        while pending and pending[0][0] <= chunk[-1].timestamp:
            events.append(label_record(heapq.heappop(pending)[2], offsets))
        events += [tx_record(tx, offsets) for tx in chunk]
        out.append(events)
        for i, tx in enumerate(chunk, start=start):
            if fraud[i]:
                label = LabelEvent(tx.transaction_id, tx.terminal_id, tx.customer_id, tx.timestamp, True,
                                   tx.timestamp + LABEL_DELAY_S, "chargeback")
                heapq.heappush(pending, (label.known_at - LABEL_LEAD_S, tx.transaction_id, label))
    return out


def decide(store, model, batches, review_budget: int = 0) -> list[tuple[int, bytes]]:
    """(transaction id, decision JSON) of every transaction of the batches, in order, through the worker core."""
    pipeline = BatchPipeline(store, lambda: model, TX, LABELS, clock=lambda: CLOCK_S,
                             review_cases_per_day=review_budget)

    async def run():
        out = []
        for events in batches:
            outcome = await pipeline.process(events)
            out += [(int(key), value) for key, value in outcome.decisions]
        return out

    return asyncio.run(run())


def decision_records(decided: list[tuple[int, bytes]], offsets) -> list[RawEvent]:
    out = []
    for tid, value in decided:
        p = tid % TX_PARTITIONS
        out.append(RawEvent(DECISIONS, p, next(offsets[DECISIONS, p]), 0, value, str(tid).encode()))
    return out


@pytest.fixture(scope="module")
def live(tiny_bundle):
    """The live run's first part, its records, and the batches of the second part after a restart."""
    model = ActiveModel.load(tiny_bundle.root)
    frame = tiny_bundle.rows(len(tiny_bundle.frame))
    offsets = _offsets()
    first = stream_batches(frame.iloc[:FIRST_PART], offsets)
    store = InMemoryStateStore()
    decided = decide(store, model, first)
    records = [e for batch in first for e in batch]
    ends = {p: max(e.offset for e in records if e.topic == TX and e.partition == p) + 1 for p in range(TX_PARTITIONS)}
    committed = dict(ends)
    committed[0] -= UNCOMMITTED  # decided and stored, offsets not committed when the worker stopped
    redelivered = [e for e in records if e.topic == TX and e.partition == 0 and e.offset >= committed[0]]
    tx_records = [e for e in records if e.topic == TX]
    picked = np.random.default_rng(3).choice(len(tx_records), RESENT, replace=False).tolist()
    resent = [tx_record(Transaction.from_json(tx_records[i].value), offsets) for i in picked]
    second = stream_batches(frame.iloc[FIRST_PART:], offsets)
    second[0] = redelivered + resent + second[0]
    return model, store, records, decided, committed, second, offsets


def rebuilt_store(model, records, decided, committed, offsets, now_s=CLOCK_S + 60.0, case_logs=True):
    work = StateRebuild(IncrementalFeatures(model.bundle.feature_config), TX, LABELS)
    work.add_decisions(decision_records(decided, offsets))
    work.add_labels([e for e in records if e.topic == LABELS])
    work.add_transactions([e for e in records if e.topic == TX])
    state = work.build(committed, now_s, DECISION_TTL_S, batch_size=500)
    store = InMemoryStateStore()
    asyncio.run(store.write_rebuilt(state.customers, state.terminals, state.label_offsets, state.decisions,
                                    review_cases=state.review_cases if case_logs else None))
    return store, state


def test_the_rebuilt_state_decides_the_rest_of_the_stream_exactly_as_the_live_state(live):
    model, live_store, records, decided, committed, second, offsets = live
    store, state = rebuilt_store(model, records, decided, committed, offsets)
    counts = state.counts
    assert counts.transactions_replayed == FIRST_PART and counts.decided_past_committed == UNCOMMITTED
    assert counts.decisions_restored == FIRST_PART and counts.left_to_workers == 0
    # the very state the worker had built: the same histories, byte for byte, and the same label offsets
    assert store.customers == live_store.customers
    assert store.terminals == live_store.terminals
    assert store.offsets == live_store.offsets
    assert store.decisions == live_store.decisions

    clean = decide(live_store, model, second)  # Redis never lost
    after = decide(store, model, second)
    assert after == clean
    original = dict(decided)
    redelivered = [tid for tid, _ in clean[:UNCOMMITTED + RESENT]]
    assert all(dict(after)[tid] == original[tid] for tid in redelivered), "a re-delivery got a new decision"

    empty = decide(InMemoryStateStore(), model, second)  # what accept-empty gives: the comparison means something
    differ = sum(a != b for a, b in zip(empty, clean))
    assert differ > 100, f"only {differ} decisions depend on the state"


def test_with_a_review_budget_the_rebuilt_case_logs_let_the_rest_be_decided_as_live(tiny_bundle):
    budget = 5  # the small model sends about 40 cards a day to review: every day's budget runs out
    model = ActiveModel.load(tiny_bundle.root)
    frame = tiny_bundle.rows(len(tiny_bundle.frame))
    offsets = _offsets()
    first = stream_batches(frame.iloc[:FIRST_PART], offsets)
    live_store = InMemoryStateStore()
    decided = decide(live_store, model, first, budget)
    records = [e for batch in first for e in batch]
    committed = {p: max(e.offset for e in records if e.topic == TX and e.partition == p) + 1
                 for p in range(TX_PARTITIONS)}
    second = stream_batches(frame.iloc[FIRST_PART:], offsets)
    store, _ = rebuilt_store(model, records, decided, committed, offsets)
    assert {day: DayCases.from_log(log) for day, log in store.review_cases.items()} == \
        {day: DayCases.from_log(log) for day, log in live_store.review_cases.items()}
    without_logs, _ = rebuilt_store(model, records, decided, committed, offsets, case_logs=False)
    clean = decide(live_store, model, second, budget)
    assert decide(store, model, second, budget) == clean
    differ = sum(a != b for a, b in zip(decide(without_logs, model, second, budget), clean))
    assert differ > 0, "the split day's budget was not spent: the comparison proves nothing"


def tx(tid, t, customer=1, terminal=7, amount=10.0):
    return Transaction(tid, t, customer, terminal, amount)


def test_what_counts_committed_decided_dead_lettered_duplicates_conflicts_and_the_window():
    import orjson

    features = IncrementalFeatures()
    window = feature_window_s(features.config)
    config = FeatureConfig()
    assert window == max(config.customer_retention_s, config.terminal_retention_s) + STATE_TRIM_SLACK_S
    t0 = 1_600_000_000.0
    latest = t0 + 100 * DAY_S
    txs = [
        tx(1, latest - window - 1.0),  # older than the window: skipped
        tx(2, latest - 2 * DAY_S),
        tx(3, latest - DAY_S),
        tx(3, latest - DAY_S),  # the same record again (a re-sent duplicate): once
        tx(4, latest - DAY_S, customer=2),
        tx(4, latest - 0.5 * DAY_S, customer=3),  # the same id with other content: a conflict
        tx(5, latest - 0.4 * DAY_S, customer=4),  # dead-lettered (e.g. too early)
        tx(6, latest),  # past the committed offset, decided: counted
        tx(7, latest, customer=5),  # past the committed offset, not decided: left to the workers
    ]
    records = [RawEvent(TX, 0, offset, 0, t.to_json()) for offset, t in enumerate(txs)]
    records.append(RawEvent(TX, 0, len(records), 0, b"{not json"))
    committed = {0: 7}
    decision = {"transaction_id": 6, "customer_id": 1, "terminal_id": 7, "amount": 10.0,
                "event_timestamp": latest, "decided_at": CLOCK_S - 3600.0}
    expired = dict(decision, transaction_id=2, event_timestamp=latest - 2 * DAY_S, decided_at=CLOCK_S - 15 * DAY_S)
    labels = [LabelEvent(1, 7, 1, latest - window - 1.0, True, latest - 3 * DAY_S, "chargeback"),  # old: skipped
              LabelEvent(2, 7, 1, latest - 2 * DAY_S, True, latest - DAY_S, "chargeback")]
    label_records = [RawEvent(LABELS, 1, 10 + i, 0, label.to_json()) for i, label in enumerate(labels)]
    label_records.append(RawEvent(LABELS, 1, 12, 0, b"null"))  # invalid: still applied (as its dead letter)

    work = StateRebuild(features, TX, LABELS)
    work.add_decisions([RawEvent(DECISIONS, 0, 0, 0, orjson.dumps(decision)),
                        RawEvent(DECISIONS, 0, 1, 0, orjson.dumps(expired)),
                        RawEvent(DECISIONS, 0, 2, 0, b"garbage")])
    work.add_dead_letters([RawEvent(DLQ, 0, 0, 0, orjson.dumps({"topic": TX, "partition": 0, "offset": 6})),
                           RawEvent(DLQ, 0, 1, 0, orjson.dumps({"topic": LABELS, "partition": 0, "offset": 6}))])
    work.add_labels(label_records)
    work.add_transactions(records)
    state = work.build(committed, CLOCK_S, DECISION_TTL_S, batch_size=2)

    c = state.counts
    assert (c.transactions_read, c.invalid, c.dead_lettered, c.duplicates, c.conflicts) == (10, 1, 1, 1, 1)
    assert (c.decided_past_committed, c.left_to_workers, c.outside_window, c.transactions_replayed) == (1, 1, 1, 4)
    assert (c.labels_read, c.labels_invalid, c.labels_outside_window, c.labels_applied) == (3, 1, 1, 1)
    assert (c.decisions_read, c.decisions_unreadable, c.decisions_expired, c.decisions_restored) == (3, 1, 1, 1)
    assert state.label_offsets == {1: 13}
    assert [(tid, left) for tid, _, left in state.decisions] == [(6, math.ceil(DECISION_TTL_S - 3600.0))]
    assert state.latest_event_s == latest and state.window_start_s == latest - window
    assert list(CustomerHistory.from_bytes(state.customers[1]).transaction_ids) == [2, 3, 6]
    assert list(CustomerHistory.from_bytes(state.customers[2]).transaction_ids) == [4]
    assert set(state.customers) == {1, 2}
    terminal = TerminalHistory.from_bytes(state.terminals[7])
    assert list(terminal.transaction_ids) == [2, 3, 4, 6]
    assert list(terminal.fraud_transaction_ids) == [2]


def test_a_label_is_applied_before_the_first_batch_that_reaches_its_known_at_in_its_partitions_order():
    from fraudstream.stream.core.rebuild import _LabelQueue

    def label(tid, known_at):
        return LabelEvent(tid, 7, 1, 0.0, True, known_at, "chargeback")

    queue = _LabelQueue([label(1, 50.0), label(2, 10.0), label(3, 40.0), label(4, 90.0)])
    assert [x.transaction_id for x in queue.due(5.0)] == []
    assert [x.transaction_id for x in queue.due(10.0)] == [1, 2]  # 1 comes early, in the partition's order
    assert [x.transaction_id for x in queue.due(45.0)] == [3]
    assert [x.transaction_id for x in queue.rest()] == [4]
