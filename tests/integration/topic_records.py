"""Reading a topic back in the integration tests: every record from the start, no consumer group."""

from __future__ import annotations

import time

#: Longest wait (ms) of one poll.
POLL_MS = 300
#: Pause (s) between two looks for a topic that is not there yet.
TOPIC_POLL_S = 0.1


def read_records(bootstrap: str, topic: str, expected: int, timeout_s: float, *, wait_for_topic: bool = True
                 ) -> list:
    """Records of ``topic`` on ``bootstrap`` from the start (manual partition assignment), returned once
    ``expected`` arrived and every partition was read to its end offset, or ``timeout_s`` passed.  A topic that
    does not exist is waited for within the time-out and then an AssertionError; with ``wait_for_topic=False`` it
    is no records at once (a broker that lost it)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             client_id="fraudstream-test-reader")
    try:
        deadline = time.monotonic() + timeout_s
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and wait_for_topic and time.monotonic() < deadline:
            time.sleep(TOPIC_POLL_S)
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            assert not wait_for_topic, f"topic {topic} not found on {bootstrap}"
            return []
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        records: list = []
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=POLL_MS).values():
                records.extend(batch)
        # ``expected`` records may be reached before every partition was read (a topic with re-sent copies
        # holds more): read each partition on to the end offset it has now, so no partition's tail is left out.
        # The embedded broker reports as end offset the base offset of a partition's last record batch, not the
        # offset after its last record: a reader that stopped there left that batch out (a decision "never
        # made" that was on the topic).  So read on until a poll brings nothing more.
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        ends = consumer.end_offsets(tps)
        while time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=POLL_MS)
            for batch in polled.values():
                records.extend(batch)
            if not polled and all(consumer.position(tp) >= ends[tp] for tp in tps):
                break
        return records
    finally:
        consumer.close()
