"""A large batch decided in chunks, each chunk's state write overlapping the next chunk's decision: the same
decisions and state as the batch decided at once, and a refused chunk write falls back to fresh reads."""

import asyncio
import uuid

import pytest

from fraudstream.stream.core.batch import BatchPipeline, counted_outcome, split_in_event_time
from fraudstream.stream.core.parse import parse_events
from fraudstream.stream.metrics import WorkerMetrics
from fraudstream.stream.model_watch import ActiveModel
from fraudstream.stream.state.memory import InMemoryStateStore
from fraudstream.stream.state.redis_store import RedisStateStore
from fraudstream.stream.types import DecisionRecord, RawEvent
from tests.unit.stream.test_pipeline_batches import LABEL_TOPIC, TX_TOPIC, events_of, expected_decisions

N_ROWS = 1200
BATCH = 400


def rows_of(tiny_bundle, n=N_ROWS):
    return tiny_bundle.frame.sort_values(["TX_DATETIME", "TRANSACTION_ID"]).head(n).reset_index(drop=True)


def store_of(kind, redis_server):
    if kind == "redis":
        return RedisStateStore.from_url(redis_server.url, f"c{uuid.uuid4().hex[:8]}", LABEL_TOPIC, 3600, 3600)
    return InMemoryStateStore()


async def decide_all(store, model, events, chunk_size, conflicts=None):
    pipeline = BatchPipeline(store, lambda: model, TX_TOPIC, LABEL_TOPIC, clock=lambda: 1.7e9,
                             on_conflict=None if conflicts is None else (lambda: conflicts.append(1)),
                             chunk_size=chunk_size)
    return [await pipeline.process(events[start:start + BATCH]) for start in range(0, len(events), BATCH)]


def decided(outcomes):
    """transaction id -> decision JSON, each transaction decided once."""
    out = {}
    for outcome in outcomes:
        for raw in outcome.new_decisions:
            tid = DecisionRecord.from_json(raw).transaction_id
            assert tid not in out, "a transaction decided twice"
            out[tid] = raw
    return out


async def stored_state(store, tids):
    if isinstance(store, InMemoryStateStore):
        return dict(store.customers), dict(store.terminals), dict(store.offsets), dict(store.decisions)
    keys = store.keys
    customers = {k: v[16:] for k, v in zip(*await _scan(store, keys.customer("*")))}
    terminals = {k: v[16:] for k, v in zip(*await _scan(store, keys.terminal("*")))}
    decisions = dict(zip(tids, await store.redis.mget([keys.decision(t) for t in tids])))
    return customers, terminals, {}, decisions


async def _scan(store, pattern):
    names = sorted([key async for key in store.redis.scan_iter(match=pattern, count=1000)])
    return [n.decode().rsplit(":", 1)[1] for n in names], await store.redis.mget(names) if names else []


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_chunks_give_the_decisions_and_state_of_the_whole_batch(tiny_bundle, redis_server, kind):
    model = ActiveModel.load(tiny_bundle.root)
    rows = rows_of(tiny_bundle)
    events = events_of(rows, with_labels=True, delay_s=model.bundle.feature_config.label_delay_s)
    tids = rows["TRANSACTION_ID"].astype(int).tolist()

    async def scenario(chunk_size, conflicts):
        store = store_of(kind, redis_server)
        outcomes = await decide_all(store, model, events, chunk_size, conflicts)
        state = await stored_state(store, tids)
        if isinstance(store, RedisStateStore):
            await store.close()
        return outcomes, state

    whole, whole_state = asyncio.run(scenario(None, []))
    conflicts: list[int] = []
    chunked, chunked_state = asyncio.run(scenario(97, conflicts))
    assert conflicts == []  # every chunk's write was checked against the one before it and accepted
    assert decided(chunked) == decided(whole)
    assert set(decided(whole)) == set(expected_decisions(model, rows))
    assert chunked_state == whole_state
    assert [o.labels_learned for o in chunked] == [o.labels_learned for o in whole]
    assert sum(o.labels_learned for o in whole) > 0
    for w, c in zip(whole, chunked):  # the same messages, in event-time order instead of arrival order
        assert sorted(c.decisions) == sorted(w.decisions) and c.review_items == w.review_items
        assert sorted(c.broker_ts_s.tolist()) == sorted(w.broker_ts_s.tolist())
        assert c.scored is not None and len(c.scored.decision) == len(w.scored.decision)


def test_split_keeps_event_time_order_and_gives_labels_and_dead_letters_to_the_first_chunk(tiny_bundle):
    model = ActiveModel.load(tiny_bundle.root)
    events = events_of(rows_of(tiny_bundle, 300), with_labels=True, delay_s=model.bundle.feature_config.label_delay_s)
    events = events[::-1] + [RawEvent(TX_TOPIC, 0, 10_000, 0, b"{not json")]  # arrival order reversed
    parsed = parse_events(events, TX_TOPIC, LABEL_TOPIC)
    chunks = split_in_event_time(parsed, 64)
    assert [len(c.transactions) for c in chunks] == [64] * 4 + [300 - 256]
    order = [(t.timestamp, t.transaction_id) for c in chunks for t in c.transactions]
    assert order == sorted(order)
    assert chunks[0].labels == parsed.labels and chunks[0].dlq == parsed.dlq and len(parsed.dlq) == 1
    assert all(not c.labels and not c.dlq for c in chunks[1:])
    assert split_in_event_time(parsed, 300) == [parsed]


class InterferingStore(InMemoryStateStore):
    """Another worker changes a terminal the batch touches just before the batch's second chunk write."""

    def __init__(self):
        super().__init__()
        self.commits = 0
        self.interfered = False

    async def commit(self, state, changes):
        self.commits += 1
        if self.commits == 3 and not self.interfered and changes.terminals:
            terminal = next(iter(changes.terminals))
            self.terminals.pop(terminal, None)  # gone (or created, below): the chunk's write is refused
            if terminal not in state.terminals:
                self.terminals[terminal] = b"written by another worker"
            self.interfered = True
        return await super().commit(state, changes)


def test_a_refused_chunk_write_is_done_again_from_fresh_state(tiny_bundle):
    model = ActiveModel.load(tiny_bundle.root)
    rows = rows_of(tiny_bundle, 600)
    events = events_of(rows, with_labels=False, delay_s=0)
    store, conflicts = InterferingStore(), []

    outcomes = asyncio.run(decide_all(store, model, events, 100, conflicts))
    assert store.interfered and conflicts == [1] and store.conflicts == 1
    decisions = decided(outcomes)
    assert set(decisions) == set(rows["TRANSACTION_ID"].astype(int).tolist())
    assert set(store.decisions) == set(decisions)
    assert sum(len(o.decisions) for o in outcomes) == len(rows) and sum(o.duplicates for o in outcomes) == 0


class FailingStore(InMemoryStateStore):
    """Redis goes away once, after the batch's first chunk writes were accepted: the third write fails."""

    def __init__(self):
        super().__init__()
        self.commits = 0

    async def commit(self, state, changes):
        self.commits += 1
        if self.commits == 3:
            raise ConnectionError("the state store went away")
        return await super().commit(state, changes)


def test_chunks_written_before_a_failure_count_as_decided_not_as_duplicates(tiny_bundle):
    model = ActiveModel.load(tiny_bundle.root)
    rows = rows_of(tiny_bundle, 600)
    events = events_of(rows, with_labels=False, delay_s=0)
    store = FailingStore()
    pipeline = BatchPipeline(store, lambda: model, TX_TOPIC, LABEL_TOPIC, clock=lambda: 1.7e9, chunk_size=100)

    async def attempts():
        with pytest.raises(ConnectionError):
            await pipeline.process(events)
        written = pipeline.take_written()
        return written, await pipeline.process(events)

    written, retry = asyncio.run(attempts())
    assert pipeline.take_written() == []  # taken once
    assert len(written) == 1 and len(written[0].new_decisions) == 200  # the first two chunks of 100
    assert retry.duplicates == 200 and len(retry.new_decisions) == 400 and len(retry.decisions) == 600
    counted = counted_outcome(retry, written)
    assert set(decided([counted])) == set(rows["TRANSACTION_ID"].astype(int).tolist())  # each once
    assert counted.duplicates == 0 and counted.decisions == retry.decisions
    assert counted.scored is not None and len(counted.scored.batch) == 600
    metrics, plain = WorkerMetrics(), WorkerMetrics()
    metrics.count_outcome(counted)
    for outcome in asyncio.run(decide_all(InMemoryStateStore(), model, events, 100)):  # no failure
        plain.count_outcome(outcome)
    for name in ("decisions", "duplicates", "review_items"):
        assert _samples(metrics, name) == _samples(plain, name), name


def _samples(metrics, name):
    """Every sample of the metric ``name`` of ``metrics`` (labels -> value)."""
    family = getattr(metrics, name)
    return {tuple(sorted(s.labels.items())): s.value for m in family.collect() for s in m.samples
            if s.name.endswith("_total")}


def test_a_chunk_write_on_its_way_when_the_next_chunk_fails_counts_as_written(tiny_bundle):
    model = ActiveModel.load(tiny_bundle.root)
    events = events_of(rows_of(tiny_bundle, 600), with_labels=False, delay_s=0)
    store, calls = InMemoryStateStore(), []

    def clock():  # deciding the third chunk fails while the second chunk's write is on its way
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("clock failed")
        return 1.7e9

    pipeline = BatchPipeline(store, lambda: model, TX_TOPIC, LABEL_TOPIC, clock=clock, chunk_size=100)

    async def attempt():
        with pytest.raises(RuntimeError, match="clock failed"):
            await pipeline.process(events)

    asyncio.run(attempt())
    written = pipeline.take_written()
    assert len(store.decisions) == 200
    assert len(written) == 1 and len(written[0].new_decisions) == len(store.decisions)
