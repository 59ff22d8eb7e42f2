"""The decision sink: produces a batch's decisions and dead letters as whole record batches, and awaits delivery.

Each message goes to the partition ``send`` would choose for its key (aiokafka's default partitioner), but the
messages of one partition are appended to one record batch and sent together: one call per partition and topic
instead of one per message.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from fraudstream.stream.types import Message


class DecisionSink:
    """Sends messages with one started ``AIOKafkaProducer`` (the sink starts and stops it).

    Parameters
    ----------
    producer : not yet started.
    topics : topics whose metadata is fetched at start, so the first batch does not wait for it.
    """

    def __init__(self, producer: AIOKafkaProducer, topics: Sequence[str]) -> None:
        self.producer = producer
        self.topics = list(topics)
        self._partitioner = DefaultPartitioner()

    async def start(self) -> None:
        await self.producer.start()
        for topic in self.topics:
            await self.producer.partitions_for(topic)

    async def stop(self) -> None:
        await self.producer.stop()

    async def send(self, batches: Sequence[tuple[str, Sequence[Message]]]) -> None:
        """Send (topic, messages) pairs and wait until the broker acknowledged every message."""
        futures: list[asyncio.Future[Any]] = []
        for topic, messages in batches:
            futures += await self._send_all(topic, messages)
        if futures:
            await asyncio.gather(*futures)

    async def _send_all(self, topic: str, messages: Sequence[Message]) -> list[asyncio.Future[Any]]:
        """Queue messages as whole record batches (partition of a key as ``send`` would choose it)."""
        producer = self.producer
        if not messages:
            return []
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: dict[int, list[Message]] = defaultdict(list)
        if len(partitions) == 1:  # every key's partition: no murmur2 per message (pure Python in aiokafka)
            by_partition[partitions[0]] = list(messages)
        else:
            for key, value in messages:
                by_partition[self._partitioner(key, partitions, partitions)].append((key, value))
        futures = []
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"a message of {len(value)} bytes does not fit a record batch of {topic}")
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures
