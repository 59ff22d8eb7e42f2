"""The transactions consumer against the real broker: it never hands out a partition's records with a gap.

Offsets are committed up to the last record of a processed batch, so a record the consumer skipped would never be
decided.  Here the consumer's fetch position is moved past records it has not handed out (as a lost buffer would
leave it); the next fetch must notice, read again from the first record not handed out, and hand out every record
exactly once, in order.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiokafka import TopicPartition

pytestmark = pytest.mark.integration

N_RECORDS = 40


class _NoRebalance:
    async def on_revoked(self, partitions) -> None:
        return None

    async def on_assigned(self, partitions) -> None:
        return None


def produce_transactions(topics) -> None:
    """N_RECORDS transactions of one card to partition 0 of the transactions topic."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=topics.bootstrap, acks="all")
    for i in range(N_RECORDS):
        producer.send(topics.transactions, partition=0, key=b"7", value=json.dumps(
            {"transaction_id": i, "timestamp": 1_522_540_800.0 + i, "customer_id": 7, "terminal_id": 1,
             "amount": 1.0}).encode())
    producer.flush(30)
    producer.close(10)


def test_a_fetch_that_would_skip_records_reads_them_again(unique_topics):
    from fraudstream.stream.broker.client_config import KafkaClientConfig
    from fraudstream.stream.broker.consumer import TransactionConsumer

    settings = unique_topics.settings()
    produce_transactions(unique_topics)

    async def run() -> list[int]:
        consumer = TransactionConsumer(KafkaClientConfig.from_settings(settings).group_consumer(),
                                       settings.transactions_topic)
        await consumer.start(_NoRebalance())
        tp = TopicPartition(settings.transactions_topic, 0)
        handed: list[int] = []
        skipped = False
        deadline = time.monotonic() + 60
        try:
            while len(handed) < N_RECORDS and time.monotonic() < deadline:
                before = time.time()
                fetched = await consumer.fetch([tp], 200, 10)
                after = time.time()
                events = fetched.get(tp, ([], []))[0]
                handed += [event.offset for event in events]
                # stamped with the fetch's return, for the worker's own latency
                assert all(before <= event.fetched_at_s <= after for event in events)
                if events and not skipped:  # lose what the broker would deliver next: jump 5 records ahead
                    consumer.consumer.seek(tp, events[-1].offset + 6)
                    skipped = True
        finally:
            await consumer.stop()
        return handed

    handed = asyncio.run(run())
    assert handed == list(range(N_RECORDS))


async def fetch_until(consumer, tp: TopicPartition, n: int) -> list[int]:
    """Offsets of the next ``n`` records of ``tp`` the consumer's fetches hand out (fewer after 60 s)."""
    got: list[int] = []
    deadline = time.monotonic() + 60
    while len(got) < n and time.monotonic() < deadline:
        got += [e.offset for e in (await consumer.fetch([tp], 200, n - len(got))).get(tp, ([], []))[0]]
    return got


def test_a_consumer_whose_fetches_stopped_is_replaced_by_one_that_resumes_at_the_committed_offset(unique_topics):
    """What the worker does when a partition with backlog returns nothing for long (``BatchConsumer``): a new
    group member on the same topic, keeping what the old one committed, reads on from the committed offset."""
    from fraudstream.stream.broker.client_config import KafkaClientConfig
    from fraudstream.stream.broker.consumer import TransactionConsumer

    settings = unique_topics.settings()
    config = KafkaClientConfig.from_settings(settings)
    produce_transactions(unique_topics)
    tp = TopicPartition(settings.transactions_topic, 0)

    async def run() -> tuple[list[int], list[int], str, dict]:
        first = TransactionConsumer(config.group_consumer(), settings.transactions_topic)
        await first.start(_NoRebalance())
        before = await fetch_until(first, tp, 10)
        await first.commit({tp: before[-1] + 1})
        first.consumer.pause(tp)  # its fetches deliver nothing more, though the partition has backlog
        stalled = await first.fetch([tp], 300, 10)
        state = first.fetch_state(tp)
        position, highwater = (await first.positions())[tp]
        assert not stalled and position < highwater
        second = first.renewed(config.group_consumer())
        await first.stop()
        await second.start(_NoRebalance())
        try:
            after = await fetch_until(second, tp, N_RECORDS - 10)
        finally:
            await second.stop()
        return before, after, state, dict(second._committed_by_me)

    before, after, state, committed = asyncio.run(run())
    assert before == list(range(10)) and after == list(range(10, N_RECORDS))
    assert "paused True" in state and "highwater 40" in state
    assert committed == {tp: 10}  # the new member still knows what was committed (broker-loss detection)


def test_records_dropped_unprocessed_with_the_consumers_knowledge_are_read_again_from_the_committed_offset(
        unique_topics):
    """A worker drops fetched records unprocessed when a rebalance overlaps the fetch that brought them.  Dropping
    them with what the consumer knows of their partition (``retain``) must make the next fetch start at the
    committed offset again, not after the dropped records (which would then never be decided)."""
    from fraudstream.stream.broker.client_config import KafkaClientConfig
    from fraudstream.stream.broker.consumer import TransactionConsumer

    settings = unique_topics.settings()
    produce_transactions(unique_topics)
    tp = TopicPartition(settings.transactions_topic, 0)

    async def run() -> tuple[list[int], list[int], list[int], list[int]]:
        consumer = TransactionConsumer(KafkaClientConfig.from_settings(settings).group_consumer(),
                                       settings.transactions_topic)
        await consumer.start(_NoRebalance())
        try:
            processed = await fetch_until(consumer, tp, 10)
            await consumer.commit({tp: processed[-1] + 1})
            dropped = await fetch_until(consumer, tp, 5)  # fetched, then dropped unprocessed
            consumer.retain([])
            again = await fetch_until(consumer, tp, 5)
            kept = await fetch_until(consumer, tp, 5)
            consumer.retain([tp])  # a partition kept: what was handed out stays handed out
            rest = await fetch_until(consumer, tp, N_RECORDS - 20)
        finally:
            await consumer.stop()
        return processed + dropped, again, kept, rest

    first, again, kept, rest = asyncio.run(run())
    assert first == list(range(15))
    assert again == list(range(10, 15))  # from the committed offset, not from 15
    assert kept == list(range(15, 20)) and rest == list(range(20, N_RECORDS))


def test_records_dropped_at_a_partitions_end_are_read_again_once_rewound_to_the_committed_offset(unique_topics):
    """Records fetched up to a partition's end and dropped unprocessed (a rebalance overlapped their fetch) have no
    later record to reveal the gap: the worker seeks back to the committed offset, or to the beginning when the
    group committed nothing."""
    from fraudstream.stream.broker.client_config import KafkaClientConfig
    from fraudstream.stream.broker.consumer import TransactionConsumer

    settings = unique_topics.settings()
    produce_transactions(unique_topics)
    tp = TopicPartition(settings.transactions_topic, 0)

    async def run() -> tuple[list[int], list[int], list[int], set, list[int]]:
        consumer = TransactionConsumer(KafkaClientConfig.from_settings(settings).group_consumer(),
                                       settings.transactions_topic)
        await consumer.start(_NoRebalance())
        try:
            everything = await fetch_until(consumer, tp, N_RECORDS)  # dropped: nothing committed yet
            consumer.retain([])
            failed = await consumer.rewind_to_committed([tp])
            from_start = await fetch_until(consumer, tp, N_RECORDS)
            await consumer.commit({tp: 10})
            consumer.retain([])  # the records from 10 on dropped, at the partition's end
            after_drop = [e.offset for e in (await consumer.fetch([tp], 300, 100)).get(tp, ([], []))[0]]
            failed |= await consumer.rewind_to_committed([tp])
            again = await fetch_until(consumer, tp, N_RECORDS - 10)
        finally:
            await consumer.stop()
        return everything, from_start, after_drop, failed, again

    everything, from_start, after_drop, failed, again = asyncio.run(run())
    assert everything == from_start == list(range(N_RECORDS)) and not failed
    assert after_drop == []  # the position is at the end: without the rewind nothing comes back
    assert again == list(range(10, N_RECORDS))


DEEP_RECORDS = 20_000
DEEP_OFFSET = 15_000


def test_a_partition_deep_in_a_large_topic_is_read(unique_topics):
    """Some brokers (the embedded one) spend the fetch wait finding the records: with the short wait the worker
    starts with, a fetch deep in a topic of 20,000 record batches (one record each, as a replay at a steady rate
    writes them) returns nothing, every time.  The consumer lengthens its wait while a partition with backlog
    starves, and reads on."""
    from aiokafka import AIOKafkaProducer

    from fraudstream.stream.broker.client_config import CONSUMER_FETCH_MAX_WAIT_MS, KafkaClientConfig
    from fraudstream.stream.broker.consumer import TransactionConsumer

    settings = unique_topics.settings()
    tp = TopicPartition(settings.transactions_topic, 0)
    value = json.dumps({"transaction_id": 1, "timestamp": 1_522_540_800.0, "customer_id": 7, "terminal_id": 1,
                        "amount": 1.0}).encode()

    async def run() -> tuple[list[int], int]:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=0,
                                    max_batch_size=len(value))  # one record a batch
        await producer.start()
        try:
            for start in range(0, DEEP_RECORDS, 10_000):
                sent = [await producer.send(settings.transactions_topic, value, partition=0)
                        for _ in range(start, start + 10_000)]
                await asyncio.gather(*sent)
        finally:
            await producer.stop()
        consumer = TransactionConsumer(KafkaClientConfig.from_settings(settings).group_consumer(),
                                       settings.transactions_topic)
        await consumer.start(_NoRebalance())
        got: list[int] = []
        highest_wait = consumer.fetch_wait.ms
        try:
            deadline = time.monotonic() + 60
            while not consumer.assignment() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            consumer.consumer.seek(tp, DEEP_OFFSET)
            while len(got) < 1000 and time.monotonic() < deadline:
                fetched = await consumer.fetch([tp], 50, 1000)
                got += [e.offset for e in fetched.get(tp, ([], []))[0]]
                highest_wait = max(highest_wait, consumer.fetch_wait.ms)
        finally:
            await consumer.stop()
        return got, highest_wait

    got, highest_wait = asyncio.run(run())
    assert got[:1000] == list(range(DEEP_OFFSET, DEEP_OFFSET + 1000)), (
        f"{len(got)} records from offset {got[:1]}; fetch wait went from {CONSUMER_FETCH_MAX_WAIT_MS} ms up to "
        f"{highest_wait} ms")
