"""The label feed against the real broker: every label up to the end offsets, partitions paused in between."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.integration


def test_a_catch_up_reads_every_label_then_leaves_the_partitions_paused(unique_topics):
    from aiokafka import AIOKafkaProducer

    from fraudstream.stream.broker.client_config import KafkaClientConfig
    from fraudstream.stream.broker.label_feed import LabelFeed

    settings = unique_topics.settings()
    config = KafkaClientConfig.from_settings(settings)

    async def applied(partitions):
        return {p: 0 for p in partitions}

    async def run() -> tuple[list[int], list[int], int, dict, dict]:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await producer.start()
        feed = LabelFeed(lambda: config.standalone_consumer("labels"), settings.labels_topic, applied)
        await feed.start()
        try:
            for i in range(30):
                await producer.send_and_wait(settings.labels_topic, str(i).encode(), key=str(i % 7).encode())
            first = [int(e.value) for e in await feed.catch_up()]
            paused_after = len(feed.consumer.paused())
            for i in range(30, 45):
                await producer.send_and_wait(settings.labels_topic, str(i).encode(), key=str(i % 7).encode())
            lag_before = await feed.fresh_lag()
            second = [int(e.value) for e in await feed.catch_up()]
            return first, second, paused_after, lag_before, feed.lag()
        finally:
            await feed.stop()
            await producer.stop()

    first, second, paused_after, lag_before, lag_after = asyncio.run(run())
    assert sorted(first) == list(range(30)) and sorted(second) == list(range(30, 45))
    assert paused_after == settings.partitions  # nothing polls the labels between two catch-ups
    assert sum(lag_before.values()) == 15 and sum(lag_after.values()) == 0
