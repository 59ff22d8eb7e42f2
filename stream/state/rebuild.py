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

Not rebuilt: the review workbench's state (pending review items, cases, the block list, users); it is not on any
topic.  Restoring Redis from its backup keeps it.

Pure part: :class:`StateRebuild` (records in, the state to write out as values; no client), reusable with any
source of records.  I/O edge: :func:`rebuild` reads the consumer group's committed offsets without joining the
group and the topics with aiokafka, partitions assigned by hand (as the label feed does), writes through the store
(:meth:`~fraudstream.stream.state.redis_store.RedisStateStore.write_rebuilt`) and writes a new state epoch last,
so that an interrupted rebuild leaves Redis without an epoch (the workers keep refusing to start; run it again).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import orjson

from fraudstream.detectors.features.definition import FeatureConfig
from fraudstream.detectors.features.online import STATE_TRIM_SLACK_S, IncrementalFeatures
from fraudstream.detectors.schema import (
    DEFAULT_EVENT_TIME_RANGE,
    EventTimeRange,
    LabelEvent,
    Transaction,
    TransactionBatch,
)
from fraudstream.stream.core.histories import learn_labels_stored, transform_stored
from fraudstream.stream.core.parse import parse_events
from fraudstream.stream.core.plan import same_content
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


def feature_window_s(config: FeatureConfig) -> float:
    """How far back (s) of the latest event time the features of a later transaction can look: the longest
    retention of the feature configuration (customer or terminal, the label delay included), plus the slack the
    worker's state keeps beyond it for late events (:data:`STATE_TRIM_SLACK_S`)."""
    return max(config.customer_retention_s, config.terminal_retention_s) + STATE_TRIM_SLACK_S


@dataclass
class RebuildCounts:
    """What a rebuild read and did with it."""

    transactions_read: int = 0
    #: transactions replayed into the histories.
    transactions_replayed: int = 0
    #: of those, records past the committed offset that had a decision (decided, not committed).
    decided_past_committed: int = 0
    #: records past the committed offset without a decision: left to the restarted workers.
    left_to_workers: int = 0
    #: records not replayed: invalid, in the dead-letter topic, duplicates and conflicts of an id, outside the window.
    invalid: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    conflicts: int = 0
    outside_window: int = 0
    labels_read: int = 0
    labels_applied: int = 0
    labels_invalid: int = 0
    labels_outside_window: int = 0
    dead_letters_read: int = 0
    decisions_read: int = 0
    decisions_restored: int = 0
    decisions_expired: int = 0
    decisions_unreadable: int = 0


@dataclass
class RebuiltState:
    """The state to write, as values.

    customers, terminals : histories as the store holds them (``to_bytes``).
    label_offsets : label partition -> applied offset (exclusive).
    decisions : (transaction id, decision JSON as produced, seconds left before it expires).
    latest_event_s, window_start_s : latest replayed event time and the start of the replayed window (epoch s;
        None when nothing was replayed).
    first_replayed_s : earliest replayed event time (None: nothing replayed).
    earliest_event_s : earliest transaction event time read (None: none read).
    """

    customers: dict[int, bytes]
    terminals: dict[int, bytes]
    label_offsets: dict[int, int]
    decisions: list[tuple[int, bytes, int]]
    counts: RebuildCounts
    latest_event_s: float | None = None
    window_start_s: float | None = None
    first_replayed_s: float | None = None
    earliest_event_s: float | None = None


@dataclass
class _Decision:
    raw: bytes
    decided_at: float


class StateRebuild:
    """Collects the records of the topics, then replays them into the state to write (:meth:`build`).

    Parameters
    ----------
    features : the incremental features of the model the workers run (its feature configuration).
    transactions_topic, labels_topic : topic names (dead letters name the topic of their record).
    time_range : sane range of transaction times, as the worker's (outside: invalid, not replayed).
    """

    def __init__(self, features: IncrementalFeatures, transactions_topic: str, labels_topic: str,
                 time_range: EventTimeRange = DEFAULT_EVENT_TIME_RANGE) -> None:
        self.features = features
        self.transactions_topic = transactions_topic
        self.labels_topic = labels_topic
        self.time_range = time_range
        self.counts = RebuildCounts()
        self._transactions: list[tuple[Transaction, int, int]] = []  # (transaction, partition, offset)
        self._labels: dict[int, list[tuple[int, LabelEvent]]] = {}  # partition -> (offset, label)
        self._label_ends: dict[int, int] = {}
        self._dead: set[tuple[int, int]] = set()  # (partition, offset) of dead-lettered transaction records
        self._decisions: dict[int, _Decision] = {}
        self._earliest: float | None = None

    # ---- records in --------------------------------------------------------------------------------------------
    def add_transactions(self, records: Sequence[RawEvent]) -> None:
        """Records of the transactions topic (any order); invalid ones are counted and left out."""
        parsed = parse_events(records, self.transactions_topic, self.labels_topic, self.time_range)
        self.counts.transactions_read += len(records)
        self.counts.invalid += len(parsed.dlq)
        for tx, event in zip(parsed.transactions, parsed.tx_events):
            self._transactions.append((tx, event.partition, event.offset))
            if self._earliest is None or tx.timestamp < self._earliest:
                self._earliest = tx.timestamp

    def add_labels(self, records: Sequence[RawEvent]) -> None:
        """Records of the labels topic, each partition's in offset order."""
        parsed = parse_events(records, self.transactions_topic, self.labels_topic, self.time_range)
        self.counts.labels_read += len(records)
        self.counts.labels_invalid += len(parsed.dlq)
        for label, (partition, offset) in zip(parsed.labels, parsed.label_at):
            self._labels.setdefault(partition, []).append((offset, label))
        for record in records:
            if record.topic == self.labels_topic:
                self._label_ends[record.partition] = max(self._label_ends.get(record.partition, 0),
                                                         record.offset + 1)

    def add_dead_letters(self, records: Iterable[RawEvent]) -> None:
        """Records of the dead-letter topic: the transaction records they name are left out."""
        for record in records:
            self.counts.dead_letters_read += 1
            try:
                letter = orjson.loads(record.value or b"")
                if letter["topic"] == self.transactions_topic:
                    self._dead.add((int(letter["partition"]), int(letter["offset"])))
            except (ValueError, KeyError, TypeError):
                continue

    def add_decisions(self, records: Iterable[RawEvent]) -> None:
        """Records of the decisions topic, each partition's in offset order; the first decision of an id counts."""
        for record in records:
            self.counts.decisions_read += 1
            try:
                decision = orjson.loads(record.value or b"")
                transaction_id, decided_at = int(decision["transaction_id"]), float(decision["decided_at"])
            except (ValueError, KeyError, TypeError):
                self.counts.decisions_unreadable += 1
                continue
            if transaction_id not in self._decisions and record.value is not None:
                self._decisions[transaction_id] = _Decision(record.value, decided_at)

    # ---- state out ---------------------------------------------------------------------------------------------
    def build(self, committed: Mapping[int, int], now_s: float, decision_ttl_s: float, batch_size: int = 2000,
              on_progress: Callable[[int, int], None] | None = None) -> RebuiltState:
        """Replay what was collected into the state to write.

        Parameters
        ----------
        committed : transactions partition -> the consumer group's committed offset (absent: nothing committed).
        now_s : wall time (epoch s) the decisions' remaining expiry is counted from.
        decision_ttl_s : the workers' ``decision_ttl_s``.
        batch_size : transactions per replayed micro-batch.
        on_progress : called with (transactions replayed, to replay) after each micro-batch.
        """
        counts = self.counts
        decisions = self._restorable(now_s, decision_ttl_s)
        kept = self._processed(committed, decisions)
        window_s = feature_window_s(self.features.config)
        latest = max((tx.timestamp for tx in kept), default=None)
        cutoff = -math.inf if latest is None else latest - window_s
        replay = [tx for tx in kept if tx.timestamp > cutoff]
        counts.outside_window = len(kept) - len(replay)
        replay.sort(key=lambda tx: (tx.timestamp, tx.transaction_id))
        labels = self._label_queues(cutoff)
        customers: dict[int, bytes] = {}
        terminals: dict[int, bytes] = {}
        step = max(1, int(batch_size))
        for start in range(0, len(replay), step):
            chunk = replay[start:start + step]
            due = [label for queue in labels for label in queue.due(chunk[-1].timestamp)]
            if due:
                learn_labels_stored(self.features, due, terminals)
                counts.labels_applied += len(due)
            transform_stored(self.features, TransactionBatch.from_transactions(chunk), customers, terminals)
            counts.transactions_replayed += len(chunk)
            if on_progress is not None:
                on_progress(counts.transactions_replayed, len(replay))
        rest = [label for queue in labels for label in queue.rest()]
        if rest:
            learn_labels_stored(self.features, rest, terminals)
            counts.labels_applied += len(rest)
        return RebuiltState(customers, terminals, dict(self._label_ends), decisions, counts, latest,
                            None if latest is None else cutoff, replay[0].timestamp if replay else None,
                            self._earliest)

    def _restorable(self, now_s: float, decision_ttl_s: float) -> list[tuple[int, bytes, int]]:
        """(id, JSON, seconds left) of the decisions not expired yet."""
        out = []
        for transaction_id, decision in self._decisions.items():
            left = decision.decided_at + decision_ttl_s - now_s
            if left <= 0:
                self.counts.decisions_expired += 1
                continue
            out.append((transaction_id, decision.raw, max(1, math.ceil(left))))
        self.counts.decisions_restored = len(out)
        return out

    def _processed(self, committed: Mapping[int, int], decisions: list[tuple[int, bytes, int]]) -> list[Transaction]:
        """The transactions the workers had counted in their state: below the committed offset or decided, not
        dead-lettered, one per id (the one its decision was made for, else the first in event-time order)."""
        counts = self.counts
        decided = {transaction_id: raw for transaction_id, raw, _ in decisions}
        candidates: list[tuple[Transaction, int, int]] = []
        for tx, partition, offset in self._transactions:
            if (partition, offset) in self._dead:
                counts.dead_lettered += 1
            elif offset < committed.get(partition, 0):
                candidates.append((tx, partition, offset))
            elif tx.transaction_id in decided:
                candidates.append((tx, partition, offset))
                counts.decided_past_committed += 1
            else:
                counts.left_to_workers += 1
        candidates.sort(key=lambda item: (item[0].timestamp, item[0].transaction_id, item[1], item[2]))
        first: dict[int, Transaction] = {}
        for tx, _, _ in candidates:
            tid = tx.transaction_id
            seen = first.get(tid)
            if seen is not None:
                if seen == tx:
                    counts.duplicates += 1
                else:
                    counts.conflicts += 1
            elif tid in decided and not same_content(tx, decided[tid]):
                counts.conflicts += 1  # the decision was made for another record of this id
            else:
                first[tid] = tx
        return list(first.values())

    def _label_queues(self, cutoff: float) -> list[_LabelQueue]:
        queues = []
        for partition in sorted(self._labels):
            entries = sorted(self._labels[partition], key=lambda item: item[0])
            kept = [label for _, label in entries if label.tx_timestamp > cutoff]
            self.counts.labels_outside_window += len(entries) - len(kept)
            queues.append(_LabelQueue(kept))
        return queues


class _LabelQueue:
    """One label partition's labels in offset order, handed out in that order: :meth:`due` gives every label up
    to the last one known by a time (those before it that are not known yet come along: applying a label early
    changes no feature)."""

    def __init__(self, labels: list[LabelEvent]) -> None:
        self.labels = labels
        self.next = 0
        # suffix minimum of known_at: a label at or after position i is known by t iff min_known[i] <= t
        self.min_known = [math.inf] * (len(labels) + 1)
        for i in range(len(labels) - 1, -1, -1):
            self.min_known[i] = min(labels[i].known_at, self.min_known[i + 1])

    def due(self, by_s: float) -> list[LabelEvent]:
        start = self.next
        while self.next < len(self.labels) and self.min_known[self.next] <= by_s:
            self.next += 1
        return self.labels[start:self.next]

    def rest(self) -> list[LabelEvent]:
        start, self.next = self.next, len(self.labels)
        return self.labels[start:]


# ---- I/O edge ----------------------------------------------------------------------------------------------------


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
                                            on_progress=lambda n: tick(f"writing: {n:,} keys"))
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
