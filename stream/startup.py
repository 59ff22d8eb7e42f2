"""Start-up checks of the worker, before it consumes anything, and the exit codes of a worker that must stop.

:func:`prepare` (run by ``fraudstream worker`` before the Faust app starts):

1. the broker and Redis must answer; while they do not, one line names the setting and the URL and the check is
   retried with back-off for ``startup_timeout_s``, then the worker exits with :data:`EXIT_UNREACHABLE` (3);
2. the state epoch (:mod:`fraudstream.stream.state.epoch`): present, or absent on a fresh deployment (then
   written); absent while the consumer group has committed offsets means Redis came back empty: exit
   :data:`~fraudstream.stream.state.epoch.EXIT_STATE_LOST` (4);
3. the topics it needs: on a fresh deployment missing ones are created with the transactions topic's partition
   count (or ``partitions``); once the state exists a missing topic, a partition count other than the epoch
   recorded, or an empty labels partition whose labels Redis already applied means the broker lost its
   data: exit :data:`EXIT_TOPICS` (5), unless ``create_missing_topics`` allows re-creating missing ones.

A running worker that finds its state or the broker's data gone calls :func:`request_exit`: it logs one line,
asks for a clean shutdown (SIGTERM to itself) and the CLI exits with the code asked for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio import Redis

from fraudstream.detectors.env_settings import redact_url
from fraudstream.stream.broker.client_config import KafkaClientConfig
from fraudstream.stream.settings import StreamSettings
from fraudstream.stream.state.epoch import (
    EXIT_STATE_LOST,
    StateEpoch,
    create_epoch,
    has_stored_decisions,
    lost_message,
    read_epoch,
)
from fraudstream.stream.state.keys import Keyspace
from fraudstream.stream.state.redis_store import decode_offset
from fraudstream.stream.topics import ensure_topics, topic_names

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Exit codes: broker or Redis unreachable at start; topics missing or changed (the broker lost its data).
EXIT_UNREACHABLE = 3
EXIT_TOPICS = 5
#: First and longest pause (s) between two start-up attempts.
STARTUP_BACKOFF_FIRST_S = 0.5
STARTUP_BACKOFF_MAX_S = 5.0
#: Longest wait (s) of one connection attempt.
CONNECT_TIMEOUT_S = 5.0

BROKER_SETTING = "KAFKA_BOOTSTRAP_SERVERS (or FRAUDSTREAM_WORKER_KAFKA_BOOTSTRAP_SERVERS)"
REDIS_SETTING = "REDIS_URL (or FRAUDSTREAM_WORKER_REDIS_URL)"


class StartupError(RuntimeError):
    """The worker cannot start; ``code`` is its exit code, the message one line for the operator."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class ExitRequest:
    """The exit code a running worker asked for (None: none); the CLI exits with it after the shutdown."""

    code: int | None = None
    message: str = ""


#: This process's exit request.
EXIT_REQUEST = ExitRequest()


def request_exit(code: int, message: str) -> None:
    """Log ``message`` once, ask for a clean shutdown (SIGTERM to this process) and remember the exit code."""
    if EXIT_REQUEST.code is not None:
        return
    EXIT_REQUEST.code, EXIT_REQUEST.message = code, message
    log.error("%s", message)
    os.kill(os.getpid(), signal.SIGTERM)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def with_backoff(what: str, setting: str, url: str, attempt: Callable[[], Awaitable[T]],
                       timeout_s: float) -> T:
    """``attempt()`` until it succeeds, with back-off, for at most ``timeout_s``; one line when it first fails.

    Raises :class:`StartupError` (:data:`EXIT_UNREACHABLE`) naming the setting and the URL when time is up.
    """
    deadline = time.monotonic() + timeout_s
    backoff = STARTUP_BACKOFF_FIRST_S
    failures = 0
    while True:
        try:
            return await asyncio.wait_for(attempt(), CONNECT_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise StartupError(EXIT_UNREACHABLE, f"{what} unreachable at {url} (setting {setting}) for "
                                                     f"{timeout_s:g} s: {_describe(exc)}") from None
            if failures == 1:
                log.warning("%s unreachable at %s (setting %s): %s; retrying with back-off for up to %g s",
                            what, url, setting, _describe(exc), timeout_s)
            await asyncio.sleep(min(backoff, max(left, 0.0)))
            backoff = min(backoff * 2, STARTUP_BACKOFF_MAX_S)


async def connect_broker(settings: StreamSettings) -> AIOKafkaConsumer:
    consumer = KafkaClientConfig.from_settings(settings).group_consumer()  # not subscribed: reads metadata, offsets
    try:
        await consumer.start()
        await consumer.topics()  # a real round trip
    except BaseException:
        await consumer.stop()
        raise
    return consumer


async def connect_redis(url: str) -> Redis:
    import redis.asyncio as aioredis

    client: Redis = aioredis.from_url(url, decode_responses=False, socket_connect_timeout=CONNECT_TIMEOUT_S)
    try:
        await client.ping()
    except BaseException:
        await client.aclose()
        raise
    return client


async def prepare(settings: StreamSettings) -> StateEpoch:
    """Every start-up check (see the module docstring); returns the state epoch the worker runs in."""
    if not settings.redis_url:
        raise StartupError(EXIT_UNREACHABLE, f"Redis is not configured: set {REDIS_SETTING}")
    servers = settings.kafka_bootstrap_servers
    if not servers.strip():
        raise StartupError(EXIT_UNREACHABLE, f"the Kafka broker is not configured: set {BROKER_SETTING}")
    consumer = await with_backoff("the Kafka broker", BROKER_SETTING, servers, lambda: connect_broker(settings),
                                  settings.startup_timeout_s)
    try:
        redis = await with_backoff("Redis", REDIS_SETTING, redact_url(settings.redis_url),
                                   lambda: connect_redis(settings.redis_url), settings.startup_timeout_s)
        try:
            return await _check_state_and_topics(settings, consumer, redis, Keyspace(settings.redis_prefix))
        finally:
            await redis.aclose()
    finally:
        await consumer.stop()


def topic_layout(consumer: AIOKafkaConsumer, names: list[str]) -> dict[str, int]:
    """Partition count of each existing topic of ``names`` (from the consumer's fresh metadata)."""
    out = {}
    for name in names:
        partitions = consumer.partitions_for_topic(name)
        if partitions:
            out[name] = len(partitions)
    return out


async def _committed_total(consumer: AIOKafkaConsumer, topic: str, partitions: int) -> int:
    total = 0
    for p in range(partitions):
        committed = await consumer.committed(TopicPartition(topic, p))
        total += committed or 0
    return total


async def _check_state_and_topics(settings: StreamSettings, consumer: AIOKafkaConsumer, redis: Redis,
                                  keys: Keyspace) -> StateEpoch:
    names = topic_names(settings)
    tx, labels = settings.transactions_topic, settings.labels_topic
    await consumer.topics()
    layout = topic_layout(consumer, names)
    raw = await read_epoch(redis, keys)
    epoch = StateEpoch.decode(raw)
    if raw is not None and epoch is None:
        raise StartupError(EXIT_STATE_LOST, f"the state epoch {keys.state_epoch} in Redis is unreadable ({raw!r})")
    if epoch is None:
        if not await has_stored_decisions(redis, keys):
            committed = await _committed_total(consumer, tx, layout.get(tx, 0))
            if committed > 0:
                raise StartupError(EXIT_STATE_LOST, lost_message(
                    keys, f"consumer group {settings.app_id!r} has committed {committed} offsets of topic {tx!r} "
                          f"but Redis holds no state of prefix {keys.prefix!r}: Redis came back empty"))
        await _create_missing(settings, names, layout)
        await consumer.topics()
        layout = topic_layout(consumer, names)
        epoch = StateEpoch.new(layout.get(tx, 0), layout.get(labels, 0))
        epoch = StateEpoch.decode(await create_epoch(redis, keys, epoch)) or epoch
        log.info("state epoch %s written (transactions %d partitions, labels %d)", epoch.epoch_id,
                 epoch.transactions_partitions, epoch.labels_partitions)
        return epoch
    missing = [n for n in names if n not in layout]
    if missing:
        if not settings.create_missing_topics:
            raise StartupError(EXIT_TOPICS, (
                f"topics {missing} are missing on the broker {settings.kafka_bootstrap_servers} while Redis holds "
                f"state of this deployment (epoch {epoch.epoch_id}): did the broker lose its data? Create them "
                f"with their partition counts (transactions {epoch.transactions_partitions}, labels "
                f"{epoch.labels_partitions}), or set FRAUDSTREAM_WORKER_CREATE_MISSING_TOPICS=true to let the "
                f"worker create them"))
        await _create_missing(settings, names, layout, epoch)
        await consumer.topics()
        layout = topic_layout(consumer, names)
    for topic, recorded in ((tx, epoch.transactions_partitions), (labels, epoch.labels_partitions)):
        if recorded and layout.get(topic, recorded) != recorded:
            raise StartupError(EXIT_TOPICS, (
                f"topic {topic!r} has {layout[topic]} partitions but had {recorded} when this deployment's state "
                f"was created (epoch {epoch.epoch_id}): per-partition state (label offsets, progress) would be "
                f"wrong. Re-create it with {recorded} partitions"))
    await _check_labels_not_behind(consumer, redis, keys, labels, layout.get(labels, 0))
    return epoch


async def _create_missing(settings: StreamSettings, names: list[str], layout: dict[str, int],
                          epoch: StateEpoch | None = None) -> None:
    missing = [n for n in names if n not in layout]
    if not missing:
        return
    partitions = layout.get(settings.transactions_topic) or (epoch.transactions_partitions if epoch else 0) \
        or settings.partitions
    created = await asyncio.to_thread(ensure_topics, settings.kafka_bootstrap_servers, missing, partitions)
    if created:
        log.info("created topics %s with %d partitions", created, partitions)


async def _check_labels_not_behind(consumer: AIOKafkaConsumer, redis: Redis, keys: Keyspace, topic: str,
                                   partitions: int) -> None:
    """A labels partition that is empty while Redis applied labels from it lost them (the broker restarted
    empty): the worker would skip every new label there."""
    if not partitions:
        return
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    ends = await consumer.end_offsets(tps)
    raws = cast(list[bytes | None], await redis.mget([keys.labels_applied(topic, p) for p in range(partitions)]))
    applied = [decode_offset(raw) for raw in raws]
    # an empty partition whose labels Redis applied: the broker lost them (end offsets are compared with zero
    # only: some brokers report the last batch's base offset as the end, below the real end)
    behind = [(tp.partition, done) for tp, done in zip(tps, applied) if done > 0 and int(ends[tp]) == 0]
    if behind:
        raise StartupError(EXIT_TOPICS, (
            f"topic {topic!r} is empty on partitions where Redis already applied labels (partition, applied: "
            f"{behind}): the broker lost its data. Restore it, or start this deployment's state anew"))
