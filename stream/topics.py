"""Kafka topics of fraudstream: their names (from the settings) and idempotent creation."""

from __future__ import annotations

import time
from collections.abc import Iterable

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from fraudstream.stream.settings import StreamSettings

#: Replication factor of created topics (single-broker development clusters).
DEFAULT_REPLICATION_FACTOR = 1
#: Timeout (ms) of one admin request.
ADMIN_REQUEST_TIMEOUT_MS = 10_000
#: Longest wait (s) for created topics to show up in the broker's metadata.
TOPIC_VISIBLE_TIMEOUT_S = 10.0
#: Pause (s) between two metadata checks.
TOPIC_POLL_INTERVAL_S = 0.1


class TopicSetupError(RuntimeError):
    """Topics could not be listed or created; the message names the broker and the topics."""


def topic_names(settings: StreamSettings) -> list[str]:
    """Every topic the stream services use: transactions, labels, decisions, dead letters."""
    names = [settings.transactions_topic, settings.labels_topic, settings.decisions_topic, settings.dlq_topic]
    return list(dict.fromkeys(names))  # unique, in order


def ensure_topics(bootstrap: str, names: Iterable[str], partitions: int,
                  replication_factor: int = DEFAULT_REPLICATION_FACTOR) -> list[str]:
    """Create the topics of ``names`` that do not exist yet; existing topics are left as they are.

    Parameters
    ----------
    bootstrap : Kafka bootstrap servers, ``host:port[,...]``.
    names : topic names.
    partitions : partitions of each created topic (>= 1).
    replication_factor : replicas of each created topic.

    Returns
    -------
    The names that were created by this call (empty when all existed).
    """
    wanted = list(dict.fromkeys(names))
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    bad = [n for n in wanted if not n or not isinstance(n, str)]
    if bad:
        raise ValueError(f"invalid topic names: {bad!r}")
    if not wanted:
        return []
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fraudstream-topics",
                                 request_timeout_ms=ADMIN_REQUEST_TIMEOUT_MS)
    except KafkaError as exc:
        raise TopicSetupError(f"cannot reach the Kafka broker at {bootstrap}: {exc!r}") from exc
    try:
        existing = set(admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        created: list[str] = []
        for name in missing:  # one request per topic: a concurrent creator makes only that topic "exist"
            try:
                admin.create_topics([NewTopic(name, partitions, replication_factor)])
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        _wait_visible(admin, wanted, bootstrap)
        return created
    except KafkaError as exc:
        raise TopicSetupError(f"cannot create topics {wanted} on {bootstrap}: {exc!r}") from exc
    finally:
        admin.close()


def _wait_visible(admin: KafkaAdminClient, names: list[str], bootstrap: str) -> None:
    deadline = time.monotonic() + TOPIC_VISIBLE_TIMEOUT_S
    while True:
        missing = set(names) - set(admin.list_topics())
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TopicSetupError(f"topics {sorted(missing)} not visible on {bootstrap} "
                                  f"after {TOPIC_VISIBLE_TIMEOUT_S:g} s")
        time.sleep(TOPIC_POLL_INTERVAL_S)
