"""Rebuilding the worker's Redis state from Kafka (``fraudstream state rebuild``) after Redis came back empty.

The workers must be stopped (a worker still running stops by itself: Redis holds no state epoch, or a new one).
What is rebuilt, and from what:

* **customer and terminal histories** (``<p>:cust:*``, ``<p>:term:*``) from the transactions the workers had
  processed: each partition of the transactions topic up to the consumer group's committed offset, plus the
  records past it that already have a decision on the decisions topic (decided, offsets not committed yet: a
  worker writes a transaction's state and its decision together, so the restarted workers will answer those
  records from the restored decision and never count them again).  Records that went to the dead-letter topic
  (invalid, too early, a conflicting id) are left out; of several records of one transaction id, the one whose
  content its decision was made for counts (else the first in event-time order), the others are duplicates or
  conflicts, as live.  Together with **every label** of the labels topic they are replayed through the worker's
  own feature update (:func:`~fraudstream.stream.core.histories.transform_stored` and
  :func:`~fraudstream.stream.core.histories.learn_labels_stored`, on the bytes the store holds) in event-time
  order, in micro-batches of ``batch_size``.  Each label is applied in its partition's order before the first
  batch that reaches its ``known_at`` (sooner is harmless: the features count a label only from its
  ``known_at``, exactly as live).
* Only the **feature window** is replayed: transactions at or before the latest replayed event time minus
  :func:`feature_window_s` (the longest retention of the model's
  :class:`~fraudstream.detectors.features.definition.FeatureConfig` plus the
  :data:`~fraudstream.detectors.features.online.STATE_TRIM_SLACK_S` the worker's state keeps beyond it), and
  the labels of such transactions, can reach no feature of a later transaction and are skipped.
* **labels-applied offsets**: each label partition up to the last record read (invalid records included: the
  worker counts their dead letters as applied too).
* **decision dedup entries** ``<p>:dec:<transaction_id>``: the decisions topic, the first decision of each id,
  bytes as produced, each with what is left of its expiry (``decided_at + decision_ttl_s - now``); expired ones
  are not restored.
* **review-case logs** ``<p>:review:cases-day:<day>`` (the review budget's): from the restored REVIEW decisions
  and the analysts' verdicts on the labels topic, so a worker with a budget goes on counting the day's cases.

Not rebuilt: the review workbench's state (pending review items, cases, the block list, users); it is not on any
topic.  Restoring Redis from its backup keeps it.

Pure part: :class:`~fraudstream.stream.core.rebuild.StateRebuild` (records in, the state to write out as
values; no client), reusable with any source of records.  I/O edge: :func:`rebuild` reads the consumer group's
committed offsets without joining the group and the topics with aiokafka, partitions assigned by hand (as the
label feed does), writes through the store (:meth:`~fraudstream.stream.state.redis_store.RedisStateStore.write_rebuilt`)
and writes a new state epoch last, so that an interrupted rebuild leaves Redis without an epoch (the workers keep
refusing to start; run it again).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from fraudstream.stream.core.rebuild import RebuiltState, StateRebuild, feature_window_s
from fraudstream.stream.types import RawEvent

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer

    from fraudstream.stream.settings import StreamSettings

#: Longest wait (ms) of one fetch while reading a topic.
READ_POLL_MS = 200
#: A topic read that gets no record for this long (s) while behind its end offsets fails.
READ_STALL_S = 30.0
#: After the end offsets are reached, further fetches (at most this many, until one returns nothing) take the
#: records a broker reported beyond its end (the embedded one reports the last batch's base offset + 1).
DRAIN_POLLS = 5
#: A progress line at most this often (s).
PROGRESS_EVERY_S = 5.0


class RebuildRefused(RuntimeError):
    """Redis holds a state epoch: there is state to lose (``--force`` rebuilds over it)."""


class RebuildError(RuntimeError):
    """The rebuild cannot run as configured (e.g. no usable model); the message names the setting."""


@dataclass
class RebuildReport:
    """What :func:`rebuild` did, for the operator."""

    state: RebuiltState
    epoch_id: str
    epoch_key: str
    transactions_partitions: int
    labels_partitions: int
    keys_written: int
    read_s: float
    replay_s: float
    write_s: float
    total_s: float
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines: what was read, replayed and written, how long it took."""
        s, c = self.state, self.state.counts
        window = ""
        if s.first_replayed_s is not None and s.latest_event_s is not None:
            window = f" (event time {_utc(s.first_replayed_s)} .. {_utc(s.latest_event_s)})"
        lines = [
            f"state rebuilt in {self.total_s:.1f} s (read {self.read_s:.1f} s, replay {self.replay_s:.1f} s, "
            f"write {self.write_s:.1f} s)",
            f"read: {c.transactions_read:,} transactions, {c.labels_read:,} labels, {c.decisions_read:,} decisions, "
            f"{c.dead_letters_read:,} dead letters",
            f"replayed: {c.transactions_replayed:,} transactions{window}, {c.labels_applied:,} labels; not replayed: "
            f"{c.outside_window:,} older than the feature window, {c.left_to_workers:,} past the committed offsets "
            f"(left to the workers), {c.duplicates:,} duplicates, {c.conflicts:,} conflicts, "
            f"{c.dead_lettered + c.invalid:,} invalid or dead-lettered",
            f"written: {len(s.customers):,} customer and {len(s.terminals):,} terminal histories, "
            f"{len(s.label_offsets)} label offsets, {c.decisions_restored:,} decisions "
            f"({c.decisions_expired:,} expired not restored); {self.keys_written:,} keys",
            f"state epoch {self.epoch_id} written at {self.epoch_key} (transactions {self.transactions_partitions} "
            f"partitions, labels {self.labels_partitions}): start the workers. Review items were not rebuilt",
        ]
        return "\n".join(lines + [f"warning: {w}" for w in self.warnings])


def _utc(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch_s))


class _Ticker:
    """Says a progress line at most every :data:`PROGRESS_EVERY_S`."""

    def __init__(self, say: Callable[[str], None], every_s: float = PROGRESS_EVERY_S) -> None:
        self.say, self.every_s = say, every_s
        self._last = time.monotonic()

    def __call__(self, line: str) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.say(line)


async def _read_topic(consumer: AIOKafkaConsumer, topic: str, partitions: int, sink: Callable[[list[RawEvent]], None],
                      tick: _Ticker, at_least: Mapping[int, int] | None = None) -> dict[int, int]:
    """Every record of ``topic`` from the beginning to its end offsets (asked now; at least ``at_least`` per
    partition) into ``sink``, a fetch at a time; returns each partition's first offset (above 0: records were
    deleted by retention)."""
    from aiokafka import TopicPartition

    from fraudstream.stream.startup import EXIT_TOPICS, StartupError

    tps = [TopicPartition(topic, p) for p in range(partitions)]
    if not tps:
        return {}
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(tps)
    target = {tp: max(int(ends[tp]), (at_least or {}).get(tp.partition, 0)) for tp in tps}
    first = {tp.partition: int(await consumer.position(tp)) for tp in tps}
    next_offset = {tp: first[tp.partition] for tp in tps}
    read = 0

    def take(fetched: Mapping[TopicPartition, Sequence[Any]]) -> int:
        events = [RawEvent(r.topic, r.partition, r.offset, r.timestamp, r.value, r.key)
                  for records in fetched.values() for r in records]
        for tp, records in fetched.items():
            if records:
                next_offset[tp] = max(next_offset[tp], records[-1].offset + 1)
        if events:
            sink(events)
        return len(events)

    behind = [tp for tp in tps if next_offset[tp] < target[tp]]
    last_record = time.monotonic()
    while behind:
        got = take(await consumer.getmany(*behind, timeout_ms=READ_POLL_MS))
        read += got
        if got:
            last_record = time.monotonic()
        elif time.monotonic() - last_record > READ_STALL_S:
            shown = ", ".join(f"{tp.partition}: at {next_offset[tp]} of {target[tp]}" for tp in behind)
            raise StartupError(EXIT_TOPICS, f"topic {topic!r} on the broker stopped delivering records below its end "
                                            f"offsets for {READ_STALL_S:g} s ({shown}): did the broker lose data?")
        behind = [tp for tp in behind if next_offset[tp] < target[tp]]
        tick(f"reading {topic}: {read:,} records")
    for _ in range(DRAIN_POLLS):
        got = take(await consumer.getmany(timeout_ms=READ_POLL_MS))
        read += got
        if not got:
            break
    return first


async def rebuild(settings: StreamSettings, *, force: bool = False, say: Callable[[str], None] = print,
                  clock: Callable[[], float] = time.time) -> RebuildReport:
    """Rebuild the state of ``settings``' deployment from its topics into its Redis (see the module docstring).

    Raises :class:`RebuildRefused` when Redis holds a state epoch and ``force`` is not set, :class:`RebuildError`
    when the model cannot be loaded, and :class:`~fraudstream.stream.startup.StartupError` when the broker or
    Redis cannot be reached (exit code 3, naming the setting and the URL) or the topics to rebuild from are missing
    or changed (exit code 5).
    """
    from fraudstream.detectors.env_settings import redact_url
    from fraudstream.stream.broker.client_config import KafkaClientConfig
    from fraudstream.stream.model_watch import ActiveModel
    from fraudstream.stream.startup import (
        BROKER_SETTING,
        EXIT_TOPICS,
        REDIS_SETTING,
        StartupError,
        connect_broker,
        connect_redis,
        topic_layout,
        with_backoff,
    )
    from fraudstream.stream.state.epoch import StateEpoch, create_epoch, read_epoch
    from fraudstream.stream.state.keys import Keyspace
    from fraudstream.stream.state.redis_store import RedisStateStore

    started = time.monotonic()
    tick = _Ticker(say)
    keys = Keyspace(settings.redis_prefix)
    redis = await with_backoff("Redis", REDIS_SETTING, redact_url(settings.redis_url),
                               lambda: connect_redis(settings.redis_url), settings.startup_timeout_s)
    store = RedisStateStore(redis, keys, settings.labels_topic, settings.state_ttl_s, settings.decision_ttl_s)
    try:
        raw = await read_epoch(redis, keys)
        existing = StateEpoch.decode(raw)
        if raw is not None and not force:
            shown = existing.epoch_id if existing is not None else f"(unreadable: {raw!r})"
            raise RebuildRefused(f"Redis holds state epoch {shown} at {keys.state_epoch}: its state would be "
                                 f"overwritten. Nothing to rebuild unless Redis lost its state; --force rebuilds "
                                 f"over it (running workers stop with exit code 4)")
        try:
            model = await asyncio.to_thread(ActiveModel.load, settings.model_dir)
        except Exception as exc:  # a missing, broken or foreign bundle: one line naming the setting
            raise RebuildError(f"no usable model at {settings.model_dir} (setting FRAUDSTREAM_WORKER_MODEL_DIR): "
                               f"{exc}") from None
        consumer = await with_backoff("the Kafka broker", BROKER_SETTING, settings.kafka_bootstrap_servers,
                                      lambda: connect_broker(settings), settings.startup_timeout_s)
        try:
            tx_topic, labels_topic = settings.transactions_topic, settings.labels_topic
            names = [tx_topic, labels_topic, settings.decisions_topic, settings.dlq_topic]
            await consumer.topics()
            layout = topic_layout(consumer, names)
            missing = [n for n in (tx_topic, labels_topic) if n not in layout]
            if missing:
                raise StartupError(EXIT_TOPICS, f"topics {missing} are missing on the broker "
                                                f"{settings.kafka_bootstrap_servers}: there is nothing to rebuild "
                                                f"the state from (did the broker lose its data?)")
            if existing is not None:  # --force over an existing state: the same partition checks as at start
                for topic, recorded in ((tx_topic, existing.transactions_partitions),
                                        (labels_topic, existing.labels_partitions)):
                    if recorded and layout[topic] != recorded:
                        raise StartupError(EXIT_TOPICS, (
                            f"topic {topic!r} has {layout[topic]} partitions but had {recorded} when this "
                            f"deployment's state was created (epoch {existing.epoch_id}): per-partition state "
                            f"(label offsets, progress) would be wrong. Re-create it with {recorded} partitions"))
            if raw is not None:  # --force: running workers stop at their next batch
                await redis.delete(keys.state_epoch)
            committed = await _committed(consumer, tx_topic, layout[tx_topic])
        finally:
            await consumer.stop()
        say(f"rebuilding the state of {settings.app_id!r} (Redis prefix {keys.prefix!r}) from {tx_topic} "
            f"(committed offsets {committed}), {labels_topic} and {settings.decisions_topic}; model "
            f"{model.version}, feature window {feature_window_s(model.features.config) / 86_400.0:g} days")
        work = StateRebuild(model.features, tx_topic, labels_topic, settings.event_time_range())
        kafka = KafkaClientConfig.from_settings(settings)
        warnings: list[str] = []
        firsts: dict[int, int] = {}
        for topic, sink in ((settings.decisions_topic, work.add_decisions), (settings.dlq_topic, work.add_dead_letters),
                            (labels_topic, work.add_labels), (tx_topic, work.add_transactions)):
            if topic not in layout:
                warnings.append(f"topic {topic!r} is missing: nothing read from it")
                continue
            reader = kafka.standalone_consumer("rebuild")
            try:
                await reader.start()
                first = await _read_topic(reader, topic, layout[topic], sink, tick,
                                          committed if topic == tx_topic else None)
            finally:
                await reader.stop()
            if topic == tx_topic:
                firsts = first
        read_done = time.monotonic()
        state = await asyncio.to_thread(
            work.build, committed, clock(), settings.decision_ttl_s, settings.batch_size,
            lambda done, total: tick(f"replaying: {done:,} of {total:,} transactions"))
        replay_done = time.monotonic()
        if (any(firsts.values()) and state.earliest_event_s is not None and state.window_start_s is not None
                and state.earliest_event_s > state.window_start_s):
            warnings.append(f"{tx_topic} keeps less than the feature window (its earliest record is from "
                            f"{_utc(state.earliest_event_s)}, the window starts {_utc(state.window_start_s)}): "
                            f"windows reaching further back start short")
        written = await store.write_rebuilt(state.customers, state.terminals, state.label_offsets, state.decisions,
                                            on_progress=lambda n: tick(f"writing: {n:,} keys"),
                                            review_cases=state.review_cases)
        epoch = StateEpoch.new(layout[tx_topic], layout[labels_topic])
        stored = StateEpoch.decode(await create_epoch(redis, keys, epoch)) or epoch
        done = time.monotonic()
        return RebuildReport(state, stored.epoch_id, keys.state_epoch, stored.transactions_partitions,
                             stored.labels_partitions, written, read_done - started, replay_done - read_done,
                             done - replay_done, done - started, warnings)
    finally:
        await store.close()


async def _committed(consumer: AIOKafkaConsumer, topic: str, partitions: int) -> dict[int, int]:
    """The consumer group's committed offset of each partition that has one."""
    from aiokafka import TopicPartition

    out = {}
    for p in range(partitions):
        offset = await consumer.committed(TopicPartition(topic, p))
        if offset is not None and offset >= 0:
            out[p] = int(cast(int, offset))
    return out
