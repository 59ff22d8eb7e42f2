"""The labels every worker reads before it scores: all partitions of the labels topic, in order.

Labels are not consumed through the consumer group: each worker assigns itself *every* partition of the labels
topic (applying a label twice is harmless: the pipeline skips labels below the applied offset stored in Redis, and
learning a label is idempotent).  Before a batch of transactions is scored, :meth:`LabelFeed.catch_up` asks the
broker for the end offsets of the label partitions (one request) and returns every label up to them, so the batch
is scored only after every label that was in the topic when its transactions had been fetched is in the store.

A starting worker resumes each partition at the applied offset stored in Redis (labels below it are already in
the shared store).

Between two catch-ups the label partitions are paused: nothing reads them then, and a consumer left to long-poll
them with the short fetch wait sends a few hundred fetch requests a second that the event loop has to answer
(at 1,000 tx/s the worker spent more CPU on that than on its transactions).  A catch-up resumes only the
partitions that are behind their end offsets, for as long as it reads them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from fraudstream.stream.broker.client_config import CONSUMER_FETCH_MAX_WAIT_MS
from fraudstream.stream.broker.fetch_wait import FetchWait, apply_fetch_wait
from fraudstream.stream.types import RawEvent

log = logging.getLogger(__name__)

#: Longest wait (ms) of one fetch of label records while catching up.
CATCH_UP_POLL_MS = 20
#: Most label records taken per fetch while catching up.
CATCH_UP_MAX_RECORDS = 10_000
#: Longest wait (s) for the labels topic's partitions to show up in the metadata at start.
PARTITIONS_TIMEOUT_S = 30.0
#: Pause (s) between two metadata checks at start.
PARTITIONS_POLL_S = 0.1
#: Longest wait (s) to catch up with the label partitions before the batch fails (and is retried).
CATCH_UP_TIMEOUT_S = 60.0


class LabelCatchUpTimeout(RuntimeError):
    """The labels topic could not be read up to its end offsets in time."""


class LabelFeed:
    """Reads all partitions of the labels topic without a group.

    Parameters
    ----------
    consumer_factory : makes the (not yet started) aiokafka consumer; it must not subscribe or join a group.
    topic : the labels topic.
    applied_offsets : ``await applied_offsets(partitions)`` gives the applied offset stored per partition.
    """

    def __init__(self, consumer_factory: Callable[[], AIOKafkaConsumer], topic: str,
                 applied_offsets: Callable[[Sequence[int]], Awaitable[dict[int, int]]]) -> None:
        self._factory = consumer_factory
        self.topic = topic
        self._applied_offsets = applied_offsets
        self.consumer: AIOKafkaConsumer | None = None
        self.partitions: list[TopicPartition] = []
        #: next offset to hand out, per partition.
        self.next_offset: dict[TopicPartition, int] = {}
        #: end offsets per partition as last asked (by a catch-up or :meth:`fresh_lag`).
        self.end_offset: dict[TopicPartition, int] = {}
        self.fetch_wait = FetchWait(CONSUMER_FETCH_MAX_WAIT_MS)

    async def start(self) -> None:
        consumer = self._factory()
        await consumer.start()
        self.consumer = consumer
        deadline = time.monotonic() + PARTITIONS_TIMEOUT_S
        numbers: set[int] | None = None
        while not numbers:
            await consumer.topics()  # refreshes the metadata
            numbers = consumer.partitions_for_topic(self.topic)
            if not numbers:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"labels topic {self.topic!r} has no partitions after {PARTITIONS_TIMEOUT_S} s")
                await asyncio.sleep(PARTITIONS_POLL_S)
        self.partitions = [TopicPartition(self.topic, p) for p in sorted(numbers)]
        consumer.assign(self.partitions)
        stored = await self._applied_offsets([tp.partition for tp in self.partitions])
        for tp in self.partitions:
            offset = stored.get(tp.partition, 0)
            consumer.seek(tp, offset)
            self.next_offset[tp] = offset
        consumer.pause(*self.partitions)
        log.info("labels: reading %d partitions of %s from applied offsets %s", len(self.partitions), self.topic,
                 {tp.partition: self.next_offset[tp] for tp in self.partitions})

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None

    async def catch_up(self) -> list[RawEvent]:
        """Label records from where this worker stands up to the partitions' end offsets (asked now).

        Records beyond the end offsets that arrive in the same fetch are returned too (applying a label early
        is safe: features count a label only from its ``known_at``).
        """
        consumer = self.consumer
        if consumer is None or not self.partitions:
            return []
        ends = await consumer.end_offsets(self.partitions)
        self.end_offset.update(ends)
        behind = [tp for tp in self.partitions if self.next_offset[tp] < ends.get(tp, 0)]
        events: list[RawEvent] = []
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        consumer.resume(*behind)
        try:
            while behind:
                fetched = await consumer.getmany(*behind, timeout_ms=CATCH_UP_POLL_MS,
                                                 max_records=CATCH_UP_MAX_RECORDS)
                got = any(fetched.values())  # nothing while behind the end offsets: the broker needs a longer wait
                apply_fetch_wait(consumer, self.fetch_wait.fed() if got else self.fetch_wait.starved())
                for tp, records in fetched.items():
                    for r in records:
                        events.append(RawEvent(r.topic, r.partition, r.offset, r.timestamp, r.value, r.key))
                    if records:
                        self.next_offset[tp] = records[-1].offset + 1
                behind = [tp for tp in behind if self.next_offset[tp] < ends[tp]]
                if behind and time.monotonic() > deadline:
                    raise LabelCatchUpTimeout(
                        f"labels {self.topic}: not caught up with end offsets "
                        f"{ {tp.partition: ends[tp] for tp in behind} } within {CATCH_UP_TIMEOUT_S} s "
                        f"(at { {tp.partition: self.next_offset[tp] for tp in behind} })")
        finally:
            consumer.pause(*self.partitions)
        return events

    async def behind_broker(self) -> list[tuple[TopicPartition, int, int]]:
        """(partition, -1, next offset) of every partition when the broker no longer has the labels topic (it
        restarted empty); empty otherwise."""
        consumer = self.consumer
        if consumer is None or not self.partitions:
            return []
        if self.topic in await consumer.topics():
            return []
        return [(tp, -1, self.next_offset[tp]) for tp in self.partitions]

    def lag(self) -> dict[TopicPartition, int]:
        """Label records in the topic (at the end offsets last asked) not handed out yet, per partition."""
        return {tp: max(0, end - self.next_offset.get(tp, 0)) for tp, end in self.end_offset.items()}

    async def fresh_lag(self) -> dict[TopicPartition, int]:
        """:meth:`lag` from end offsets asked now (a round trip)."""
        consumer = self.consumer
        if consumer is None or not self.partitions:
            return {}
        self.end_offset.update(await consumer.end_offsets(self.partitions))
        return self.lag()
