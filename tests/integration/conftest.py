"""Shared fixtures of the integration tests: a real Kafka broker and a real Redis, fresh topic names.

Where the services come from, in order: ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` when set; containers through
testcontainers when a Docker engine answers; else the embedded broker (Tansu) and ``redis-server`` started here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from fraudstream.stream.settings import StreamSettings

#: Longest wait (s) for the Docker engine to answer a ping.
DOCKER_PING_TIMEOUT_S = 3
#: Partitions of the per-test topics (the worker's default).
TEST_TOPIC_PARTITIONS = 3
#: Longest wait (s) when reading a topic back.
READ_TIMEOUT_S = 30.0


def _docker_available() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=DOCKER_PING_TIMEOUT_S)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no docker package, no socket, engine down: all mean "no Docker here"
        return False


@pytest.fixture(scope="session")
def docker_available() -> bool:
    return _docker_available()


@pytest.fixture(scope="session")
def kafka_bootstrap(docker_available: bool) -> Iterator[str]:
    """``host:port`` of a real Kafka-compatible broker for the whole session."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    if docker_available:
        try:
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:
            from testcontainers.kafka import KafkaContainer
        with KafkaContainer() as container:
            yield container.get_bootstrap_server()
        return
    from fraudstream.stream.embedded import EmbeddedKafka

    with EmbeddedKafka() as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def redis_url(docker_available: bool) -> Iterator[str]:
    """``redis://host:port/0`` of a real Redis for the whole session."""
    given = os.environ.get("REDIS_URL")
    if given:
        yield given
        return
    if docker_available:
        try:
            from testcontainers.community.redis import RedisContainer
        except ImportError:
            from testcontainers.redis import RedisContainer
        with RedisContainer() as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(container.port)}/0"
        return
    from fraudstream.stream.embedded import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server.url


@dataclass(frozen=True)
class TopicSet:
    """Fresh topic names for one test (created on the broker), and settings that use them."""

    bootstrap: str
    prefix: str
    transactions: str
    labels: str
    decisions: str
    dlq: str

    def names(self) -> list[str]:
        return [self.transactions, self.labels, self.decisions, self.dlq]

    def settings(self, **overrides) -> StreamSettings:
        """Defaults, with this set's topics, broker, a unique app id and a unique Redis key prefix."""
        values = dict(kafka_bootstrap_servers=self.bootstrap, transactions_topic=self.transactions,
                      labels_topic=self.labels, decisions_topic=self.decisions, dlq_topic=self.dlq,
                      app_id=f"{self.prefix}-app", redis_prefix=self.prefix, partitions=TEST_TOPIC_PARTITIONS,
                      metrics_port=0)
        values.update(overrides)
        return StreamSettings(**values)


@pytest.fixture
def unique_topics(kafka_bootstrap: str) -> TopicSet:
    """Transactions, labels, decisions and dead-letter topics with a uuid prefix, already created."""
    from fraudstream.stream.topics import ensure_topics

    prefix = f"t{uuid.uuid4().hex[:12]}"
    topics = TopicSet(kafka_bootstrap, prefix, f"{prefix}-transactions", f"{prefix}-labels",
                      f"{prefix}-decisions", f"{prefix}-dlq")
    ensure_topics(kafka_bootstrap, topics.names(), TEST_TOPIC_PARTITIONS)
    return topics


@pytest.fixture
def read_topic(kafka_bootstrap: str) -> Callable[..., list]:
    """``read_topic(topic, expected, timeout_s=30)``: the topic's records from the start (manual partition
    assignment, no consumer group), returned once ``expected`` records arrived or the timeout passed."""
    from topic_records import read_records

    def read(topic: str, expected: int, timeout_s: float = READ_TIMEOUT_S) -> list:
        return read_records(kafka_bootstrap, topic, expected, timeout_s)

    return read
