"""The worker's consume loop: fetch transactions, release micro-batches by event time, handle, commit, publish.

:class:`BatchConsumer` (a service of the Faust app) consumes transactions with an aiokafka consumer group
(:class:`~fraudstream.stream.broker.consumer.TransactionConsumer`) into per-partition buffers and releases as a
batch (up to ``batch_size``) what the event-time watermark allows (:mod:`~fraudstream.stream.event_time`: nothing
more than a small slack later than the earliest pending record of any transaction partition, this worker's or
another's).  It hands each batch to :meth:`WorkerRuntime.handle <fraudstream.stream.runtime.WorkerRuntime.handle>`,
commits the batch's offsets explicitly after delivery, publishes its partitions' progress in the state store for
the other workers, and on a rebalance lets the batch in flight finish and commit before partitions are given up.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from mode import Service

from fraudstream.detectors.units import MS_PER_S
from fraudstream.stream.broker.consumer import Positions, TransactionConsumer
from fraudstream.stream.core.parse import REASON_TOO_EARLY, dead_letter
from fraudstream.stream.event_time import LATE, TOO_EARLY, EventTimeAligner, PartitionProgress, Released, foreign_floor
from fraudstream.stream.health import HealthMonitor
from fraudstream.stream.runtime import CHUNK_BATCHES, WorkerRuntime
from fraudstream.stream.startup import EXIT_TOPICS, request_exit
from fraudstream.stream.state.base import StateStoreError
from fraudstream.stream.state.epoch import EXIT_STATE_LOST, StateLostError
from fraudstream.stream.types import Message, RawEvent

log = logging.getLogger(__name__)

#: When a fetch returns a full batch (the worker is behind), the next batch may be this many times larger: fixed
#: per-batch costs (round trips, commits) are then shared by more events, and it is decided in two chunks whose
#: state writes overlap the decision of the next (see ``runtime.CHUNK_BATCHES``).
LAGGING_BATCH_FACTOR = 2 * CHUNK_BATCHES
#: Delivered batches' offsets are committed at most this often (s) while batches keep coming, and at once when a
#: round releases nothing, on a rebalance and at stop: a commit is a broker round trip on every batch's path, and
#: offsets delivered but not committed yet are only read again after a crash, then answered from the stored
#: decisions (re-sent, never decided twice).
COMMIT_INTERVAL_S = 0.1
#: Wait (s) of the next round when records are held back only by other workers' partitions: their owners publish
#: progress after each batch, and a worker that waited the whole batch wait for it made two workers sharing a
#: backlog advance one slack of event time (5 min) per 50 ms.
FOREIGN_POLL_S = 0.005
#: Warn when partitions with backlog return no records (and hold the others back) for this long (s).
HOLD_WARNING_S = 30.0
#: Expiry (s) of a partition's published progress, so entries of workers long gone do not linger (a partition
#: without an entry and with records holds the others back until its owner publishes).
PROGRESS_TTL_S = 60.0
#: Unchanged progress is written again this often (s), before it expires.
PROGRESS_REFRESH_S = 10.0
#: A partition with backlog whose fetches return nothing for this long (s), while the held-back buffer has room,
#: gets a new consumer: its fetcher stopped delivering (seen with the embedded broker after a worker fell behind);
#: the new member resumes from the committed offsets.
STALLED_FETCH_RESTART_S = 20.0
#: Longest wait (s) for the stalled consumer to stop.
CONSUMER_STOP_TIMEOUT_S = 10.0
#: Health rounds in a row that must find the broker's end offsets below what this worker processed before it
#: stops (a broker that lost its data stays that way; one round could be a stale answer).
LOST_ROUNDS_TO_STOP = 2


class BatchConsumer(Service):
    """Group consumer, micro-batches released by event time, explicit commits, progress for the other workers."""

    def __init__(self, runtime: WorkerRuntime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime
        self.settings = runtime.settings
        self.consumer: TransactionConsumer | None = None
        self.batch_lock = asyncio.Lock()
        self.aligner: EventTimeAligner[TopicPartition, RawEvent] = EventTimeAligner(
            rules=self.settings.event_time_rules())
        self._published: dict[TopicPartition, bytes] = {}  # partition -> progress value last written
        self._published_at = -math.inf  # monotonic time (s) of the last full refresh
        #: revocations and assignments so far; a round that saw one start in the middle releases nothing.
        self.rebalances = 0
        #: transaction partitions held from the last assignment to their revocation (the client's own assignment
        #: still lists revoked partitions until the group hands out the new one).
        self._held: set[TopicPartition] = set()
        #: assigned partitions whose fetched records were dropped and whose committed offset is still to be sought
        self._to_rewind: set[TopicPartition] = set()
        self._lost_rounds = 0  # health rounds in a row that found the broker below what was processed
        self._stalled_since: float | None = None  # monotonic time since when a partition with backlog starves
        self._to_commit: dict[TopicPartition, int] = {}  # offsets of delivered batches not committed yet
        self._committed_at = -math.inf  # monotonic time (s) of the last commit
        m = runtime.metrics
        self.health = HealthMonitor(m.redis_up, m.broker_up, self._publish_lag,
                                    lambda: self._probe_redis if runtime.ready.is_set() else None,
                                    lambda: self._fresh_lag if self.consumer is not None else None,
                                    self.settings.health_interval_s, self.settings.health_timeout_s)

    # ---- rebalance callbacks (RebalanceHandler) ----------------------------------------------------------------
    async def on_revoked(self, partitions: Collection[TopicPartition]) -> None:
        """Let the batch in flight finish (and commit) before partitions are handed to another worker."""
        async with self.batch_lock:
            self.rebalances += 1
            if self.consumer is not None:
                await self._commit(self.consumer)
            self._held.difference_update(partitions)
            for tp in partitions:
                self.forget_partition(tp)

    async def on_assigned(self, partitions: Collection[TopicPartition]) -> None:
        self.rebalances += 1
        self._held = set(partitions)

    def forget_partition(self, tp: TopicPartition) -> None:
        if self.consumer is not None:
            self.consumer.forget(tp)
        self.aligner.forget(tp)
        self._published.pop(tp, None)
        try:
            self.runtime.metrics.consumer_lag.remove(tp.topic, str(tp.partition))
        except KeyError:
            pass

    # ---- service -----------------------------------------------------------------------------------------------
    async def on_start(self) -> None:
        await self.runtime.ready.wait()
        assert self.runtime.kafka is not None
        self.consumer = TransactionConsumer(self.runtime.kafka.group_consumer(), self.settings.transactions_topic,
                                            self.settings.event_time_range())
        await self.consumer.start(self)

    async def on_stop(self) -> None:
        if self.consumer is not None:
            async with self.batch_lock:
                await self._commit(self.consumer)
                await self.consumer.stop()

    @Service.task
    async def _watch_health(self) -> None:
        """Health gauges and lag on their own timer (never raises; see :mod:`~fraudstream.stream.health`)."""
        await self.runtime.ready.wait()
        await self.health.run(lambda: self.should_stop)

    async def _probe_redis(self) -> None:
        """Redis answers, and still holds the state epoch this worker started with (else stop: exit 4)."""
        store = self.runtime.store
        await store.ping()
        try:
            await store.check_epoch()
        except StateLostError as exc:
            request_exit(EXIT_STATE_LOST, str(exc))

    async def _fresh_lag(self) -> dict[TopicPartition, int]:
        """Lag from offsets asked now; a broker that lost the topics or the group's committed offsets lost its
        data (it restarted empty): stop (exit 5) rather than decide on half a stream."""
        assert self.consumer is not None
        lags = await self.consumer.fresh_lag()
        lost = list(self.consumer.behind_broker)
        labels = self.runtime.labels
        if labels is not None:
            lags.update(await labels.fresh_lag())
            lost += await labels.behind_broker()
        self._lost_rounds = self._lost_rounds + 1 if lost else 0
        if self._lost_rounds >= LOST_ROUNDS_TO_STOP:
            shown = ", ".join(f"{tp.topic}/{tp.partition} " + ("gone" if at < 0 else f"at {at}") + f" < {done}"
                              for tp, at, done in lost)
            request_exit(EXIT_TOPICS, f"the broker {self.settings.kafka_bootstrap_servers} lost what this worker "
                                      f"already processed (topic or committed offsets: {shown}): did it restart "
                                      f"empty? Stopping; restore the broker's data, then start again (start-up "
                                      f"checks the topics)")
        return lags

    @Service.task
    async def _consume(self) -> None:
        s = self.settings
        timeout_ms = max(1, int(s.batch_wait_s * MS_PER_S))
        held_since: float | None = None
        unreleased_since: float | None = None
        foreign_poll_ms = max(1, int(FOREIGN_POLL_S * MS_PER_S))
        wait = True
        held_by_others = False
        while not self.should_stop:
            consumer = self.consumer
            if consumer is None:
                await asyncio.sleep(s.batch_wait_s)
                continue
            rebalances = self.rebalances
            if self._to_rewind:  # outside the batch lock: a revocation meanwhile only makes a seek fail
                self._to_rewind = await consumer.rewind_to_committed(self._to_rewind)
                if self._to_rewind:
                    await asyncio.sleep(s.batch_wait_s)
                    continue
            await self._fetch(consumer, (foreign_poll_ms if held_by_others else timeout_ms) if wait else 0)
            positions = await consumer.positions()
            floors = await self._foreign_floors(consumer)
            async with self.batch_lock:
                if rebalances != self.rebalances:
                    # the fetch may have added records after the revocation dropped their partition's buffer, and
                    # positions and floors may describe the old assignment: start over from the committed offsets
                    # (sought explicitly: records dropped at a partition's end have no later record to show the gap)
                    self._drop_fetched(consumer, ())
                    self._to_rewind = set(consumer.assignment())
                    wait = False
                    continue
                assigned = consumer.assignment()
                self._drop_fetched(consumer, assigned)
                at_end = {tp: highwater is not None and position is not None and position >= highwater
                          for tp, (position, highwater) in positions.items() if tp in assigned}
                limit = s.batch_size * LAGGING_BATCH_FACTOR if self.aligner.total_buffered > s.batch_size \
                    else s.batch_size
                released = self.aligner.take_released(at_end, limit, floors)
                self.runtime.metrics.held_back_events.set(self.aligner.total_buffered)
                # wait in the next fetch unless more can be released at once
                starving = self.aligner.starving(at_end)
                wait = not released or bool(starving) or not self.aligner.total_buffered
                held_by_others = not released and bool(floors) and self.aligner.total_buffered > 0
                held_since = self._note_hold(starving, held_since)
                stalled = self._stalled(starving)
                unreleased_since = self._note_unreleased(released, at_end, floors, unreleased_since)
                if released:
                    events, too_early, late = split_released(released)
                    # behind (a full batch): the next records are decoded while Redis writes this batch's state
                    prefetch = _Prefetch(self._fetch, consumer) if len(events) >= s.batch_size else None
                    if not await self.runtime.handle(events, too_early, prefetch):
                        return
                    if prefetch is not None:
                        prefetch.raise_error()
                    if late:
                        self.runtime.metrics.late_events.inc(late)
                    self._to_commit.update({tp: records[-1].record.offset + 1 for tp, records in released.items()})
                if not released or time.monotonic() - self._committed_at >= COMMIT_INTERVAL_S:
                    await self._commit(consumer)
                await self._publish_progress(positions, at_end, alone=not consumer.foreign_partitions())
            if stalled:
                await self._restart_consumer(consumer, stalled)
                continue
            await self._update_lag(consumer)

    def _drop_fetched(self, consumer: TransactionConsumer, keep: Collection[TopicPartition]) -> None:
        """Drop the fetched, unprocessed records of every partition not in ``keep``, with what the consumer knows
        of them (so their next fetch starts from the committed offset instead of past the dropped records)."""
        self.aligner.retain(keep)
        consumer.retain(keep)

    async def _commit(self, consumer: TransactionConsumer) -> None:
        """Commit the offsets of the batches delivered since the last commit (see :data:`COMMIT_INTERVAL_S`)."""
        if self._to_commit:
            offsets, self._to_commit = self._to_commit, {}
            await consumer.commit(offsets)
        self._committed_at = time.monotonic()

    async def _fetch(self, consumer: TransactionConsumer, timeout_ms: int, adapt_wait: bool = True) -> None:
        """One fetch into the aligner's buffers, for the partitions whose buffer is not full, within the bound of
        the records held back (``adapt_wait``: see ``TransactionConsumer.fetch``)."""
        cap = min(self.settings.batch_size * LAGGING_BATCH_FACTOR, self.aligner.room())
        assigned = consumer.assignment()
        fetchable = [tp for tp in assigned if self.aligner.buffered(tp) < cap] if cap > 0 else []
        if not fetchable:
            await asyncio.sleep(timeout_ms / MS_PER_S)  # held back by another worker's partitions
            return
        if len(fetchable) == len(assigned):
            fetchable = []  # every assigned partition
        for tp, (events, times) in (await consumer.fetch(fetchable, timeout_ms, cap, adapt_wait)).items():
            self.aligner.add(tp, events, times)

    async def _foreign_floors(self, consumer: TransactionConsumer) -> dict[TopicPartition, float]:
        """Lower bounds of the next pending event time of the transaction partitions other workers own.

        End offsets are asked before the owners' published progress is read (see ``event_time.foreign_floor``).
        On a broker or state store error every such partition holds this worker back for one round.
        """
        others = consumer.foreign_partitions()
        if not others:
            return {}
        try:
            ends = await consumer.end_offsets(others)
            raws = await self.runtime.store.read_progress(consumer.topic, [tp.partition for tp in others])
        except (KafkaError, StateStoreError, OSError, TimeoutError) as exc:  # be conservative this round
            log.warning("event-time alignment: progress of partitions %s not read (%r); holding back",
                        [tp.partition for tp in others], exc)
            return {tp: -math.inf for tp in others}
        floors = {}
        for tp, raw in zip(others, raws):
            floor = foreign_floor(PartitionProgress.decode(raw), ends.get(tp, 0))
            if floor is not None:
                floors[tp] = floor
        return floors

    async def _publish_progress(self, positions: Positions, at_end: dict[TopicPartition, bool], alone: bool = False
                                ) -> None:
        """Publish how far each assigned partition is processed, for the workers that own the other partitions.

        Written after the batch's state is in the store; unchanged values are refreshed every
        :data:`PROGRESS_REFRESH_S`.  While this worker owns every partition (``alone``) nobody reads them, so only
        the refresh is written (one state-store round trip less per batch): a worker that joins reads an older,
        lower view, which holds it back a little longer, never too little, until the rebalance is done and this
        worker publishes its partitions' progress again.
        """
        now = time.monotonic()
        refresh = now - self._published_at > PROGRESS_REFRESH_S
        if alone and not refresh:
            return
        changed: dict[TopicPartition, bytes] = {}
        for tp in at_end:
            first = self.aligner.first(tp)
            next_offset = first.offset if first is not None else positions[tp][0]
            if next_offset is None:
                continue
            value = PartitionProgress(next_offset, self.aligner.head(tp), self.aligner.released_to(tp)).encode()
            if refresh or self._published.get(tp) != value:
                changed[tp] = value
        if not changed:
            return
        try:
            for topic in {tp.topic for tp in changed}:
                await self.runtime.store.publish_progress(
                    topic, {tp.partition: v for tp, v in changed.items() if tp.topic == topic}, PROGRESS_TTL_S)
        except (StateStoreError, OSError, TimeoutError) as exc:  # the others keep their older (lower) view
            log.warning("event-time alignment: progress not published (%r)", exc)
            return
        self._published.update(changed)
        if refresh:
            self._published_at = now

    def _stalled(self, starving: list[TopicPartition]) -> list[TopicPartition]:
        """The starving partitions once they have starved for :data:`STALLED_FETCH_RESTART_S` while the buffer had
        room (a full buffer fetches nothing on purpose); empty otherwise."""
        if not starving or self.aligner.room() == 0:
            self._stalled_since = None
            return []
        now = time.monotonic()
        if self._stalled_since is None:
            self._stalled_since = now
        return starving if now - self._stalled_since > STALLED_FETCH_RESTART_S else []

    async def _restart_consumer(self, consumer: TransactionConsumer, stalled: list[TopicPartition]) -> None:
        """Replace a consumer whose fetches stopped delivering: forget its partitions, stop it, start a new
        group member (it resumes from the committed offsets; the partitions' records are read again)."""
        log.warning("partitions %s have backlog but their fetches returned nothing for %.0f s (%s); restarting the "
                    "consumer", sorted(f"{tp.topic}/{tp.partition}" for tp in stalled), STALLED_FETCH_RESTART_S,
                    "; ".join(f"{tp.partition}: {consumer.fetch_state(tp)}" for tp in stalled))
        assert self.runtime.kafka is not None
        self._stalled_since = None
        async with self.batch_lock:
            self.consumer = None
            for tp in consumer.assignment():
                self.aligner.forget(tp)
                self._published.pop(tp, None)
            self.rebalances += 1
        try:
            await asyncio.wait_for(consumer.stop(), CONSUMER_STOP_TIMEOUT_S)
        except Exception as exc:  # a stuck consumer may not stop cleanly; its session then times out
            log.warning("the stalled consumer did not stop cleanly (%r)", exc)
        renewed = consumer.renewed(self.runtime.kafka.group_consumer())
        await renewed.start(self)
        self.consumer = renewed
        self.runtime.metrics.consumer_restarts.inc()

    def _note_hold(self, starving: list[TopicPartition], held_since: float | None) -> float | None:
        """Warn once when partitions with backlog but no fetched records hold the others back for long."""
        if not starving:
            return None
        now = time.monotonic()
        if held_since is None:
            return now
        if now - held_since > HOLD_WARNING_S:
            log.warning("event-time alignment: partitions %s have backlog but returned no records for %.0f s; "
                        "the other partitions wait for them", sorted(f"{tp.topic}/{tp.partition}" for tp in starving),
                        now - held_since)
            return now
        return held_since

    def _note_unreleased(self, released: dict[TopicPartition, list[Released[RawEvent]]],
                         at_end: dict[TopicPartition, bool], floors: dict[TopicPartition, float],
                         unreleased_since: float | None) -> float | None:
        """Warn (every :data:`HOLD_WARNING_S`) while records are held back and none is released, saying why."""
        if released or not self.aligner.total_buffered:
            return None
        now = time.monotonic()
        if unreleased_since is None:
            return now
        if now - unreleased_since > HOLD_WARNING_S:
            log.warning("event-time alignment: %d records held back, none released for %.0f s: %s",
                        self.aligner.total_buffered, now - unreleased_since, self.aligner.describe(at_end, floors))
            return now
        return unreleased_since

    async def _update_lag(self, consumer: TransactionConsumer) -> None:
        labels = self.runtime.labels
        lags = dict(labels.lag()) if labels is not None else {}
        lags.update(await consumer.lag())
        self._publish_lag(lags)

    def _publish_lag(self, lags: Mapping[TopicPartition, int]) -> None:
        """Set the lag gauge of the partitions in ``lags`` this worker holds now: a lag asked before a revocation
        (``forget_partition`` removed the partition's series) must not bring the revoked partition back, or the
        worker reports partitions another worker owns."""
        gauge = self.runtime.metrics.consumer_lag
        for tp, lag in lags.items():
            if tp.topic != self.settings.transactions_topic or tp in self._held:
                gauge.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)


class _Prefetch:
    """The next fetch, run while Redis writes a batch's state: the records are decoded into the aligner's buffers
    meanwhile instead of after the batch (a batch waits on its state write for about a third of its time: 120 ms
    of 310 ms for 7,000 transactions on the worker bench).  It runs under the batch lock, so the assignment does
    not change during it; its error is raised after the batch is delivered, where a fetch's error would be."""

    def __init__(self, fetch: Callable[[TransactionConsumer, int, bool], Awaitable[None]],
                 consumer: TransactionConsumer) -> None:
        self._fetch = fetch
        self._consumer = consumer
        self._error: Exception | None = None

    async def __call__(self) -> None:
        try:
            await self._fetch(self._consumer, 0, False)
        except Exception as exc:  # not the batch's error: kept for the consume loop
            self._error = exc

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error


def split_released(released: dict[TopicPartition, list[Released[RawEvent]]]
                   ) -> tuple[list[RawEvent], list[Message], int]:
    """Released records as (events to handle, dead letters of the too-early ones, how many were late).

    Late records are handled at once like any other (the features see them in event-time order within their
    batch); too-early ones never reach the state: they go to the dead-letter topic with the reason.
    """
    events: list[RawEvent] = []
    too_early: list[Message] = []
    late = 0
    for records in released.values():
        for item in records:
            if item.timing == TOO_EARLY:
                event = item.record
                too_early.append((event.key, dead_letter(event, REASON_TOO_EARLY, item.reason or "too early",
                                                         "timestamp")))
                continue
            if item.timing == LATE:
                late += 1
            events.append(item.record)
    return events, too_early, late
