"""The worker core (BatchPipeline) against each state store (a real Redis: embedded redis-server; in memory) and a
small trained cascade.

Checks: decisions equal the batch path (features + one cascade call) for the same rows, duplicates re-emit the
stored decision and do not change state, REVIEW decisions have review items, and labels are learned once.
"""

import asyncio
import json
import uuid

import numpy as np
import pytest

from fraudstream.detectors.schema import TX_FRAUD, LabelEvent, Transaction, TransactionBatch
from fraudstream.review_queue.queue import ReviewQueue
from fraudstream.stream.core.batch import BatchPipeline
from fraudstream.stream.metrics import WorkerMetrics
from fraudstream.stream.model_watch import ActiveModel
from fraudstream.stream.state.memory import InMemoryStateStore
from fraudstream.stream.state.redis_store import RedisStateStore
from fraudstream.stream.types import DecisionRecord, RawEvent

TX_TOPIC, LABEL_TOPIC = "tx", "labels"
N_ROWS = 1500


@pytest.fixture(scope="module")
def small_model(tiny_bundle):
    return tiny_bundle.root, tiny_bundle.frame


def expected_decisions(model: ActiveModel, frame):
    """The batch path on the same rows: batch features, one cascade call."""
    from fraudstream.training.train import with_features

    config = model.bundle.feature_config
    featured = with_features(frame, config)
    X = featured[config.feature_names()].to_numpy(dtype=np.float64)
    result = model.bundle.cascade.score(X, TransactionBatch.from_frame(frame))
    return {int(t): (int(d), float(r)) for t, d, r in zip(frame["TRANSACTION_ID"], result.decision, result.risk)}


def events_of(frame, with_labels: bool, delay_s: float):
    """Raw transaction events in time order, each preceded by the labels known by its time."""
    batch = TransactionBatch.from_frame(frame)
    fraud = frame[TX_FRAUD].to_numpy()
    events, label_queue = [], []
    for i in range(len(batch)):
        t = float(batch.timestamp[i])
        while with_labels and label_queue and label_queue[0].known_at <= t:
            events.append(RawEvent(LABEL_TOPIC, 0, len(events), 0, label_queue.pop(0).to_json()))
        tx = Transaction(int(batch.transaction_id[i]), t, int(batch.customer_id[i]), int(batch.terminal_id[i]),
                         float(batch.amount[i]))
        events.append(RawEvent(TX_TOPIC, 0, len(events), 1_700_000_000_000, tx.to_json()))
        label_queue.append(LabelEvent(tx.transaction_id, tx.terminal_id, tx.customer_id, t, bool(fraud[i]),
                                      t + delay_s))
    return events


STORES = ["redis", "memory"]


def make_pipeline(store_kind, redis_url, root):
    """(pipeline, model, store) with a fresh store of the given kind."""
    if store_kind == "redis":
        store = RedisStateStore.from_url(redis_url, f"p{uuid.uuid4().hex[:8]}", LABEL_TOPIC, 3600, 3600)
    else:
        store = InMemoryStateStore()
    model = ActiveModel.load(root)
    return BatchPipeline(store, lambda: model, TX_TOPIC, LABEL_TOPIC), model, store


async def close(store):
    if isinstance(store, RedisStateStore):
        await store.close()


async def run_batches(pipeline, events, size, metrics=None):
    outs = []
    for start in range(0, len(events), size):
        outs.append(await pipeline.process(events[start:start + size]))
        if metrics is not None:
            metrics.count_outcome(outs[-1])
    return outs


def new_records(outcome):
    return [DecisionRecord.from_json(raw) for raw in outcome.new_decisions]


@pytest.mark.parametrize("store_kind", STORES)
def test_stream_decisions_equal_the_batch_path_and_duplicates_are_answered_from_the_store(
        redis_server, small_model, store_kind):
    root, frame = small_model
    rows = frame.sort_values(["TX_DATETIME", "TRANSACTION_ID"]).head(N_ROWS).reset_index(drop=True)
    metrics = WorkerMetrics()
    pipeline, model, store = make_pipeline(store_kind, redis_server.url, root)
    delay = model.bundle.feature_config.label_delay_s
    events = events_of(rows, with_labels=True, delay_s=delay)

    async def scenario():
        first = await run_batches(pipeline, events, 257, metrics)
        again = await run_batches(pipeline, events[:600], 100, metrics)  # re-delivery of the start
        review = await ReviewQueue(store).pending(limit=10_000)
        await close(store)
        return first, again, review

    first, again, review = asyncio.run(scenario())
    decided = {}
    for out in first:
        for _, raw in out.decisions:
            record = DecisionRecord.from_json(raw)
            assert record.transaction_id not in decided, "a transaction decided twice"
            decided[record.transaction_id] = record
    expected = expected_decisions(model, rows)
    assert set(decided) == set(expected)
    for tid, (decision, risk) in expected.items():
        assert decided[tid].decision == ["ALLOW", "BLOCK", "REVIEW"][decision], tid
        assert abs(decided[tid].risk - risk) < 1e-6, tid
        assert decided[tid].model_version == model.version
    assert sum(o.labels_learned for o in first) > 0

    replayed = [raw for out in again for _, raw in out.decisions]
    assert sum(o.duplicates for o in again) == len(replayed) > 0
    assert sum(len(new_records(o)) for o in again) == 0 and sum(o.labels_learned for o in again) == 0
    for raw in replayed:
        rec = DecisionRecord.from_json(raw)
        assert raw == decided[rec.transaction_id].to_json()
    review_ids = {tid for tid, _ in review}
    # a chargeback that arrived for a REVIEW item settled it: the rest is pending
    charged_back = {LabelEvent.from_json(e.value).transaction_id for e in events if e.topic == LABEL_TOPIC}
    reviewed = {t for t, r in decided.items() if r.decision == "REVIEW"}
    assert reviewed & charged_back and reviewed - charged_back
    assert review_ids == reviewed - charged_back
    assert metrics.duplicates._value.get() == len(replayed)


REISSUE = 10**9


@pytest.mark.parametrize("store_kind", STORES)
def test_a_reissued_card_keeps_its_accounts_history_and_the_block_list_goes_by_card(
        redis_server, small_model, store_kind):
    """Rows of half the customers after their midpoint come on a new card naming the customer as its account:
    their features go on from the account's history (decisions equal the batch path on the file, where the
    customer is the account), and blocking the old cards blocks only the rows still on them."""
    root, frame = small_model
    rows = frame.sort_values(["TX_DATETIME", "TRANSACTION_ID"]).head(N_ROWS).reset_index(drop=True)
    customer = rows["CUSTOMER_ID"].to_numpy()
    later = rows.groupby("CUSTOMER_ID").cumcount().to_numpy() >= rows.groupby("CUSTOMER_ID")["CUSTOMER_ID"] \
        .transform("size").to_numpy() // 2
    reissued = later & (customer % 2 == 0)
    old_cards = sorted({int(c) for c in customer[customer % 2 == 0]})
    pipeline, model, store = make_pipeline(store_kind, redis_server.url, root)
    row_of = {int(t): i for i, t in enumerate(rows["TRANSACTION_ID"])}
    events = []
    for event in events_of(rows, with_labels=True, delay_s=model.bundle.feature_config.label_delay_s):
        if event.topic == TX_TOPIC:
            tx = Transaction.from_json(event.value)
            card = tx.customer_id + REISSUE if reissued[row_of[tx.transaction_id]] else tx.customer_id
            moved = Transaction(tx.transaction_id, tx.timestamp, card, tx.terminal_id, tx.amount,
                                account_id=tx.customer_id)
            event = RawEvent(TX_TOPIC, 0, event.offset, event.timestamp_ms, moved.to_json())
        events.append(event)
    half = next(k for k, e in enumerate(events) if e.topic == TX_TOPIC
                and row_of[Transaction.from_json(e.value).transaction_id] == N_ROWS // 2)

    async def scenario():
        first = await run_batches(pipeline, events[:half], 200)
        if store_kind == "redis":
            for card in old_cards:
                await store.redis.set(store.keys.block(card), b'{"since": 1}')
        else:
            store.blocked.update(old_cards)
        rest = await run_batches(pipeline, events[half:], 200)
        outs = first + rest
        case_timelines = {}
        if store_kind == "redis":  # the case file of a reissued card's review item reads the account's history
            from fraudstream.review_queue.casefile import load_case_file

            for out in outs:
                for record in new_records(out):
                    if record.needs_review and record.customer_id >= REISSUE and len(case_timelines) < 3:
                        item = await store.review_item(record.transaction_id)
                        if item.get("status") == "pending":
                            case = await load_case_file(store.redis, store.keys.prefix, [item])
                            case_timelines[record.transaction_id] = (item, len(case.timeline))
        await close(store)
        return outs, case_timelines

    outs, case_timelines = asyncio.run(scenario())
    raws = [raw for out in outs for raw in out.new_decisions]
    assert all(DecisionRecord.from_json(raw).to_json() == raw for raw in raws)  # the account key round-trips
    records = {r.transaction_id: r for out in outs for r in new_records(out)}
    assert all(r.account_id == r.customer_id % REISSUE for r in records.values())
    if store_kind == "redis":
        assert case_timelines, "some reissued card's transaction went to review"
        for item, points in case_timelines.values():
            assert int(item["account_id"]) == int(item["customer_id"]) - REISSUE
            assert points > 1  # the account's earlier transactions, on the old card, are in its timeline
    expected = expected_decisions(model, rows)
    assert set(records) == set(expected)
    tids = rows["TRANSACTION_ID"].to_numpy()
    second_half = np.arange(len(rows)) >= N_ROWS // 2
    on_old_card = second_half & (customer % 2 == 0) & ~reissued
    assert on_old_card.any() and (second_half & reissued).any()
    for i, tid in enumerate(tids.tolist()):
        record = records[tid]
        assert abs(record.risk - expected[tid][1]) < 1e-6, tid  # the account's history, whatever the card
        if on_old_card[i]:
            assert record.decision == "BLOCK" and record.stage == "RULES", tid
        else:
            assert "rule:live_block_list" not in record.reasons, tid
        if reissued[i]:
            assert record.customer_id == int(customer[i]) + REISSUE


@pytest.mark.parametrize("store_kind", STORES)
def test_duplicates_inside_one_batch_and_bad_events_do_not_stop_the_batch(redis_server, small_model, store_kind):
    root, frame = small_model
    rows = frame.sort_values(["TX_DATETIME", "TRANSACTION_ID"]).head(50).reset_index(drop=True)
    pipeline, model, store = make_pipeline(store_kind, redis_server.url, root)
    events = events_of(rows, with_labels=False, delay_s=0)
    bad = RawEvent(TX_TOPIC, 0, 999, 0, b'{"transaction_id": 1}')
    mixed = events[:10] + [bad] + events[:5] + events[10:]

    async def scenario():
        out = await pipeline.process(mixed)
        await close(store)
        return out

    out = asyncio.run(scenario())
    assert len(out.decisions) == len(events) + 5
    assert out.duplicates == 5 and len(new_records(out)) == len(events)
    assert [k for k, _ in out.decisions[10:15]] == [k for k, _ in out.decisions[:5]]
    assert [v for _, v in out.decisions[10:15]] == [v for _, v in out.decisions[:5]]
    assert len(out.dlq) == 1 and json.loads(out.dlq[0][1])["field"] == "timestamp"
    expected = expected_decisions(model, rows)
    for rec in new_records(out):
        assert abs(rec.risk - expected[rec.transaction_id][1]) < 1e-6


def test_labels_are_joined_to_stored_decisions_and_drift_is_measured(small_model):
    from fraudstream.detectors.drift import LIGHT_SCORE, reference_of_manifest

    root, frame = small_model
    rows = frame.sort_values(["TX_DATETIME", "TRANSACTION_ID"]).head(N_ROWS).reset_index(drop=True)
    pipeline, model, store = make_pipeline("memory", None, root)
    metrics = WorkerMetrics()
    reference = reference_of_manifest(model.bundle.manifest)
    assert LIGHT_SCORE in reference
    metrics.set_model_version(model.version, reference)
    events = events_of(rows, with_labels=True, delay_s=model.bundle.feature_config.label_delay_s)
    size = 257
    outcomes = asyncio.run(run_batches(pipeline, events, size, metrics))

    # expected: a label counts when its transaction was decided by an earlier batch
    decided_in, decision_of = {}, {}
    for b, out in enumerate(outcomes):
        for raw in out.new_decisions:
            record = DecisionRecord.from_json(raw)
            decided_in[record.transaction_id], decision_of[record.transaction_id] = b, record.decision
    expected: dict[tuple[str, str], int] = {}
    labels_seen = 0
    for b in range(len(outcomes)):
        for event in events[b * size:(b + 1) * size]:
            if event.topic != LABEL_TOPIC:
                continue
            labels_seen += 1
            label = LabelEvent.from_json(event.value)
            if decided_in.get(label.transaction_id, b) < b:
                key = (decision_of[label.transaction_id], "fraud" if label.fraud else "legit")
                expected[key] = expected.get(key, 0) + 1
    counted = {(s.labels["decision"], s.labels["label"]): s.value
               for family in metrics.registry.collect() if family.name == "fraudstream_labelled_decisions"
               for s in family.samples if s.name.endswith("_total")}
    assert counted == expected and sum(expected.values()) > 100
    assert {s.labels["model_version"] for family in metrics.registry.collect()
            if family.name == "fraudstream_labelled_decisions" for s in family.samples} == {model.version}
    assert metrics.label_delay.count("chargeback") == labels_seen == sum(o.labels_learned for o in outcomes)

    psi = {s.labels["signal"]: s.value for family in metrics.registry.collect()
           if family.name == "fraudstream_drift_psi" for s in family.samples}
    assert set(psi) == set(reference) and all(np.isfinite(v) and v >= 0 for v in psi.values())
    metrics.set_model_version("another-version")  # a new model: the old version's drift series go
    assert not [s for family in metrics.registry.collect() if family.name == "fraudstream_drift_psi"
                for s in family.samples]


class _RecordingStore:
    """A store that notes when its writes start and end, and refuses the first one (as a concurrent change of
    shared state would)."""

    def __init__(self, store):
        self.store = store
        self.log = []
        self.refusals = 1

    def __getattr__(self, name):
        return getattr(self.store, name)

    async def start_commit(self, state, changes):
        self.log.append("write started")
        return self._result(state, changes)

    async def _result(self, state, changes):
        if self.refusals:
            self.refusals -= 1
            await asyncio.sleep(0.01)  # Redis at work
            self.log.append("write refused")
            return False
        committed = await self.store.commit(state, changes)
        self.log.append("write done")
        return committed


def test_work_given_for_the_write_runs_once_after_the_write_started(small_model):
    root, frame = small_model
    rows = frame.sort_values(["TX_DATETIME", "TRANSACTION_ID"]).head(200).reset_index(drop=True)
    pipeline, _, store = make_pipeline("memory", None, root)
    recording = pipeline.store = _RecordingStore(store)
    events = events_of(rows, with_labels=False, delay_s=0.0)

    async def meanwhile():
        recording.log.append("other work")

    outcome = asyncio.run(pipeline.process(events, meanwhile))
    assert recording.log == ["write started", "other work", "write refused", "write started", "write done"]
    assert len(outcome.new_decisions) == len(rows)
