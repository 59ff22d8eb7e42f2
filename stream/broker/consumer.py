"""The transactions consumer: an aiokafka group member with explicit commits and rebalance callbacks.

It decodes each fetched transaction once (:func:`~fraudstream.stream.event_time.decode_transaction`: the
validated transaction, or the JSON object when it does not validate, and its event time), so the worker core and
the event-time alignment reuse it.  Offsets are committed only when
the caller says a batch is delivered; a commit refused because the group rebalanced is logged and dropped (the
partitions' new owner re-reads those events and answers them from the stored decisions).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Sequence
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from fraudstream.detectors.schema import DEFAULT_EVENT_TIME_RANGE, EventTimeRange
from fraudstream.stream.broker.client_config import CONSUMER_FETCH_MAX_WAIT_MS
from fraudstream.stream.broker.fetch_wait import FetchWait, adapt_fetch_wait
from fraudstream.stream.event_time import decode_transaction
from fraudstream.stream.types import RawEvent

log = logging.getLogger(__name__)

#: Start of the log line written after each assignment of transaction partitions (tests and tools wait for it).
PARTITIONS_ASSIGNED_LOG = "partitions assigned:"
#: Records decoded between two yields to the event loop: a fetch decoded while Redis runs a batch's write (see
#: the batch loop) lets the loop send the rest of that write meanwhile (5 ms of decoding a slice).
DECODE_SLICE = 1000

#: Per partition: (position: next offset to fetch, highwater: broker's end at the last fetch); None = not known.
Positions = dict[TopicPartition, tuple[int | None, int | None]]


class RebalanceHandler(Protocol):
    """What the consumer calls when the group takes partitions away or hands new ones."""

    async def on_revoked(self, partitions: Collection[TopicPartition]) -> None: ...

    async def on_assigned(self, partitions: Collection[TopicPartition]) -> None: ...


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, handler: RebalanceHandler) -> None:
        self.handler = handler

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self.handler.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        await self.handler.on_assigned(assigned)
        log.info("%s %s", PARTITIONS_ASSIGNED_LOG, sorted(f"{tp.topic}/{tp.partition}" for tp in assigned))


class TransactionConsumer:
    """Group consumer of one topic.

    Parameters
    ----------
    consumer : not yet started, with a group id and auto-commit off (``KafkaClientConfig.group_consumer``).
    topic : the transactions topic.
    time_range : sane range of event times; a record outside it has no event time (it will be a dead letter).
    """

    def __init__(self, consumer: AIOKafkaConsumer, topic: str,
                 time_range: EventTimeRange = DEFAULT_EVENT_TIME_RANGE) -> None:
        self.consumer = consumer
        self.topic = topic
        self.time_range = time_range
        self._committed: dict[TopicPartition, int] = {}
        #: Highest offset this worker ever committed per partition; kept when a partition is revoked, because a
        #: broker that restarts empty revokes every partition (the group is gone) before it assigns them again.
        self._committed_by_me: dict[TopicPartition, int] = {}
        #: (partition, offset the broker has committed (-1: none or no topic), offset this worker committed) where
        #: the last :meth:`fresh_lag` found the broker below what this worker committed: it lost its data.
        self.behind_broker: list[tuple[TopicPartition, int, int]] = []
        #: Per assigned partition: the offset after the last record handed out since it was assigned, so that a
        #: fetch that would skip records is noticed and read again from there (see :meth:`_contiguous`).
        self._handed_to: dict[TopicPartition, int] = {}
        #: Per partition: the last gap (expected offset, first offset fetched) read again.
        self._gaps: dict[TopicPartition, tuple[int, int]] = {}
        self.fetch_wait = FetchWait(CONSUMER_FETCH_MAX_WAIT_MS)

    def renewed(self, consumer: AIOKafkaConsumer) -> TransactionConsumer:
        """A consumer of the same topic on a new (not yet started) aiokafka consumer, keeping what this one
        committed (a broker that later comes back empty is still noticed)."""
        out = TransactionConsumer(consumer, self.topic, self.time_range)
        out._committed_by_me = dict(self._committed_by_me)
        return out

    def fetch_state(self, tp: TopicPartition) -> str:
        """What the aiokafka fetcher knows of a partition, for a log line (its internals; best effort)."""
        fetcher = getattr(self.consumer, "_fetcher", None)
        if fetcher is None:
            return "fetcher not started"
        try:
            task = fetcher.error_future
            ended = "cancelled" if task.done() and task.cancelled() else task.exception() if task.done() else None
            routine = "running" if not task.done() else f"ended ({ended!r})"
            assignment = self.consumer._subscription.subscription.assignment
            state = assignment.state_value(tp) if assignment is not None else None
            return (f"fetch routine {routine}, nodes with a fetch in flight {sorted(fetcher._in_flight)}, records "
                    f"waiting {tp in fetcher._records}, position {getattr(state, 'position', None)}, paused "
                    f"{getattr(state, 'paused', None)}, highwater {self.consumer.highwater(tp)}, fetch wait "
                    f"{fetcher._fetch_max_wait_ms} ms")
        except Exception as exc:  # internals of another aiokafka version
            return f"fetcher state unknown ({exc!r})"

    async def start(self, handler: RebalanceHandler) -> None:
        self.consumer.subscribe([self.topic], listener=_Listener(handler))
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    def assignment(self) -> set[TopicPartition]:
        return set(self.consumer.assignment())

    def forget(self, tp: TopicPartition) -> None:
        """Drop what is known of a revoked partition."""
        self._committed.pop(tp, None)
        self._handed_to.pop(tp, None)
        self._gaps.pop(tp, None)

    def retain(self, partitions: Collection[TopicPartition]) -> None:
        """Drop what is known of every partition not in ``partitions`` (an empty collection: of all).

        Whoever drops fetched records unprocessed must drop this too: the next fetch of such a partition then
        starts from its committed offset again instead of skipping what was handed out and lost.
        """
        keep = set(partitions)
        for tp in {*self._committed, *self._handed_to, *self._gaps} - keep:
            self.forget(tp)

    async def rewind_to_committed(self, partitions: Collection[TopicPartition]) -> set[TopicPartition]:
        """Seek each of ``partitions`` still assigned back to the group's committed offset (its beginning when
        nothing is committed) and forget what was handed out of it; returns those whose committed offset could not
        be read (to try again).

        For records fetched and then dropped unprocessed: forgetting them (:meth:`retain`) lets the next fetch that
        brings later records find the gap, but at the end of a partition no later record comes, and the dropped
        ones would never be read again.
        """
        failed: set[TopicPartition] = set()
        for tp in partitions:
            if tp not in self.consumer.assignment():
                continue  # its next owner reads from the committed offset
            try:
                committed = await self.consumer.committed(tp)
            except KafkaError as exc:
                log.warning("%s/%d: committed offset not read (%r); rewinding later", tp.topic, tp.partition, exc)
                failed.add(tp)
                continue
            try:
                if committed is None:
                    await self.consumer.seek_to_beginning(tp)
                else:
                    self.consumer.seek(tp, committed)
            except IllegalStateError:
                continue  # revoked while the committed offset was asked
            self.forget(tp)
        return failed

    async def fetch(self, partitions: Sequence[TopicPartition], timeout_ms: int, max_records: int,
                    adapt_wait: bool = True) -> dict[TopicPartition, tuple[list[RawEvent], list[float | None]]]:
        """One ``getmany`` (every assigned partition when ``partitions`` is empty): per partition still assigned,
        its records and their event times (None: unreadable).  ``adapt_wait`` False: what the fetch returned does
        not move the broker fetch wait (a fetch taken early, whose emptiness says nothing of the broker)."""
        backlog_at = {tp: self.consumer.highwater(tp) for tp in partitions or self.consumer.assignment()}
        fetched = await self.consumer.getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)
        fetched_at_s = time.time()
        assigned = self.consumer.assignment()
        if adapt_wait:
            # longer broker waits while a partition with backlog gets nothing (see fetch_wait)
            await adapt_fetch_wait(self.consumer, self.fetch_wait,
                                   {tp: end for tp, end in backlog_at.items() if tp in assigned}, fetched)
        out: dict[TopicPartition, tuple[list[RawEvent], list[float | None]]] = {}
        for tp, records in fetched.items():
            if tp in assigned and records:
                records = await self._contiguous(tp, records)
            if tp in assigned and records:
                events, times = [], []
                for i, r in enumerate(records):  # each transaction is decoded once, here: the worker core reuses it
                    if i and not i % DECODE_SLICE:
                        await asyncio.sleep(0)
                    decoded, event_time = decode_transaction(r.value, self.time_range)
                    events.append(RawEvent(r.topic, r.partition, r.offset, r.timestamp, r.value, r.key, decoded,
                                           fetched_at_s))
                    times.append(event_time)
                out[tp] = (events, times)
                self._handed_to[tp] = records[-1].offset + 1
        return out

    async def _contiguous(self, tp: TopicPartition, records: list[ConsumerRecord]) -> list[ConsumerRecord]:
        """The fetched records of ``tp`` that continue exactly where the records handed out before end.

        Offsets are committed up to the last record of a processed batch, so a record skipped between two fetches
        would never be decided.  A fetch that starts past the expected offset (the committed one for the first
        fetch after an assignment) is dropped and the partition read again from there, once per gap (offsets
        without records, e.g. transaction markers, or records a broker deleted below its log start, give the same
        gap again and are then accepted); records below it (read twice) are dropped.
        """
        expected = self._handed_to.get(tp)
        if expected is None:
            try:
                committed = await self.consumer.committed(tp)
            except KafkaError:
                committed = None
            if committed is not None and records[0].offset > committed:
                expected = int(committed)
        if expected is None:
            return records
        if records[0].offset > expected:
            gap = (expected, records[0].offset)
            if self._gaps.get(tp) == gap:  # read again and the same: offsets without records (e.g. markers)
                return records
            self._gaps[tp] = gap
            log.warning("%s/%d: a fetch started at offset %d, past %d (the next record not yet handed out); "
                        "reading again from %d", tp.topic, tp.partition, records[0].offset, expected, expected)
            self.consumer.seek(tp, expected)
            return []
        return [r for r in records if r.offset >= expected]

    async def positions(self) -> Positions:
        """Per assigned partition: (position, highwater); either None when not known yet (not fetched since it was
        assigned)."""
        consumer = self.consumer
        out: Positions = {}
        for tp in consumer.assignment():
            if tp not in consumer.assignment():  # revoked while an earlier position was awaited
                continue
            highwater = consumer.highwater(tp)
            if highwater is None:
                out[tp] = (None, None)
                continue
            try:
                out[tp] = (await consumer.position(tp), highwater)
            except IllegalStateError:  # revoked meanwhile
                continue
        return out

    def foreign_partitions(self) -> list[TopicPartition]:
        """Partitions of the topic this consumer is not assigned (other workers own them)."""
        assigned = self.consumer.assignment()
        return [TopicPartition(self.topic, p) for p in sorted(self.consumer.partitions_for_topic(self.topic) or ())
                if TopicPartition(self.topic, p) not in assigned]

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return dict(await self.consumer.end_offsets(list(partitions)))

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self.consumer.commit(offsets)
            self._committed.update(offsets)
            for tp, offset in offsets.items():
                self._committed_by_me[tp] = max(offset, self._committed_by_me.get(tp, offset))
        except (CommitFailedError, IllegalStateError) as exc:
            # the group rebalanced meanwhile: the new owner re-reads these events and answers them from the
            # stored decisions, so nothing is lost or decided twice.
            log.warning("offsets not committed (%r); the partitions' new owner will re-deliver", exc)

    async def fresh_lag(self) -> dict[TopicPartition, int]:
        """Records not committed yet per assigned partition, from offsets asked now (round trips, so it also tells
        whether the broker answers).

        Fills :attr:`behind_broker` when the broker lost the topic, or the group's committed offset of a
        partition is gone or lower than this worker committed (a broker that restarted empty): committed offsets
        are compared, not end offsets, because some brokers (the embedded one) report as end offset the base
        offset of the last record batch, below the real end.
        """
        consumer = self.consumer
        before = dict(self._committed_by_me)  # taken before the broker is asked: a healthy one is not below it
        topics = await consumer.topics()  # always a remote call: answered or raises
        if self.topic not in topics:  # the broker lost the topic: everything committed is gone
            self.behind_broker = [(tp, -1, done) for tp, done in before.items()] or [
                (TopicPartition(self.topic, -1), -1, 0)]
            return {}
        assigned = list(consumer.assignment())
        ends = await consumer.end_offsets(assigned) if assigned else {}
        out: dict[TopicPartition, int] = {}
        behind = []
        for tp, end in ends.items():
            committed = await consumer.committed(tp)  # a remote call (OffsetFetch), not the cached value
            if tp in before and (committed is None or committed < before[tp]):
                behind.append((tp, -1 if committed is None else int(committed), before[tp]))
            done = int(committed) if committed is not None else 0
            highwater = consumer.highwater(tp) or 0  # from the last fetch: never above the real end
            out[tp] = max(0, max(int(end), highwater) - done)
        self.behind_broker = behind
        return out

    async def lag(self) -> dict[TopicPartition, int]:
        """Records not committed yet per assigned partition (broker's highwater at the last fetch - committed)."""
        consumer = self.consumer
        out: dict[TopicPartition, int] = {}
        for tp in consumer.assignment():
            if tp not in consumer.assignment():  # revoked while an earlier partition's offset was awaited
                continue
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            done = self._committed.get(tp)
            if done is None:
                try:
                    done = await consumer.committed(tp)
                except KafkaError:
                    continue
                if done is None:
                    continue
                self._committed[tp] = done
            out[tp] = max(0, highwater - done)
        return out
