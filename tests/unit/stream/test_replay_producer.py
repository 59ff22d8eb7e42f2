"""A topic that vanishes from the broker mid-replay is a clear Kafka error, not kafka-python's TypeError."""

from __future__ import annotations

import pytest
from kafka.errors import KafkaError

from fraudstream.stream.broker.replay_producer import TopicVanishedError, send_checked


class ProducerWithoutTheTopic:
    """What kafka-python's producer does when its metadata lost the topic: the partitioner iterates None."""

    config = {"bootstrap_servers": "127.0.0.1:9092"}

    def send(self, topic, key=None, value=None):
        return sorted(None)  # TypeError: 'NoneType' object is not iterable


class Producer:
    config = {"bootstrap_servers": "127.0.0.1:9092"}

    def send(self, topic, key=None, value=None):
        return (topic, key, value)


def test_a_vanished_topic_names_the_topic_the_broker_and_how_far_the_replay_got():
    with pytest.raises(TopicVanishedError) as caught:
        send_checked(ProducerWithoutTheTopic(), "transactions", b"1", b"{}", sent=1234)
    text = str(caught.value)
    assert "'transactions'" in text and "127.0.0.1:9092" in text and "1234" in text
    assert isinstance(caught.value, KafkaError)  # the CLI's Kafka error path prints it as one line


def test_a_present_topic_is_sent_as_is():
    assert send_checked(Producer(), "t", b"k", b"v", sent=0) == ("t", b"k", b"v")
