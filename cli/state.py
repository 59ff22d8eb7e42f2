"""``fraudstream state``: the operator's view of the worker's state epoch, and the recovery from an emptied Redis.

``fraudstream state show`` prints the epoch marker.  ``fraudstream state accept-empty`` is the documented
recovery when the worker stopped with exit code 4 (Redis came back empty): it writes a new epoch, so the next
start goes on from the committed offsets with empty state.  What that costs: customer and terminal histories
start empty (features rebuild from new traffic over the feature window, 30 days), re-delivered transactions are
no longer recognised as duplicates, and pending review items are gone.  Restoring Redis from its backup (AOF/RDB)
avoids all of it and needs no command.
"""

from __future__ import annotations

import asyncio
import sys

import click

from fraudstream.stream.settings import StreamSettings

EXIT_REFUSED = 2


async def _show(settings: StreamSettings) -> str:
    from fraudstream.stream.startup import REDIS_SETTING, connect_redis, with_backoff
    from fraudstream.stream.state.epoch import StateEpoch, read_epoch
    from fraudstream.stream.state.keys import Keyspace

    keys = Keyspace(settings.redis_prefix)
    redis = await with_backoff("Redis", REDIS_SETTING, settings.redis_url, lambda: connect_redis(settings.redis_url),
                               settings.startup_timeout_s)
    try:
        epoch = StateEpoch.decode(await read_epoch(redis, keys))
    finally:
        await redis.aclose()
    if epoch is None:
        return f"no state epoch at {keys.state_epoch} (a fresh deployment, or Redis lost its state)"
    return (f"state epoch {epoch.epoch_id} at {keys.state_epoch}: created {epoch.created_at:.0f} (epoch s), "
            f"transactions {epoch.transactions_partitions} partitions, labels {epoch.labels_partitions}")


async def _accept_empty(settings: StreamSettings) -> str:
    from fraudstream.stream.startup import (
        BROKER_SETTING,
        REDIS_SETTING,
        connect_broker,
        connect_redis,
        topic_layout,
        with_backoff,
    )
    from fraudstream.stream.state.epoch import StateEpoch, create_epoch, read_epoch
    from fraudstream.stream.state.keys import Keyspace

    keys = Keyspace(settings.redis_prefix)
    redis = await with_backoff("Redis", REDIS_SETTING, settings.redis_url, lambda: connect_redis(settings.redis_url),
                               settings.startup_timeout_s)
    try:
        existing = StateEpoch.decode(await read_epoch(redis, keys))
        if existing is not None:
            raise click.ClickException(f"Redis holds state epoch {existing.epoch_id}: nothing to accept")
        consumer = await with_backoff("the Kafka broker", BROKER_SETTING, settings.kafka_bootstrap_servers,
                                      lambda: connect_broker(settings), settings.startup_timeout_s)
        try:
            layout = topic_layout(consumer, [settings.transactions_topic, settings.labels_topic])
        finally:
            await consumer.stop()
        epoch = StateEpoch.new(layout.get(settings.transactions_topic, 0), layout.get(settings.labels_topic, 0))
        stored = StateEpoch.decode(await create_epoch(redis, keys, epoch)) or epoch
    finally:
        await redis.aclose()
    return (f"state epoch {stored.epoch_id} written at {keys.state_epoch}: the worker starts with empty state; "
            f"features rebuild from new traffic")


@click.group(name="state")
def command() -> None:
    """The worker's state epoch in Redis: show it, or accept that Redis came back empty."""


@command.command(name="show")
@click.option("--redis-url", default=None, help="Redis URL (default: REDIS_URL / FRAUDSTREAM_WORKER_REDIS_URL).")
def show(redis_url: str | None) -> None:
    """Print the state epoch marker."""
    from fraudstream.stream.startup import StartupError

    settings = StreamSettings.from_env(redis_url=redis_url)
    if not settings.redis_url:
        raise click.UsageError("no Redis: pass --redis-url or set REDIS_URL")
    try:
        click.echo(asyncio.run(_show(settings)))
    except StartupError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.code)


@command.command(name="accept-empty")
@click.option("--redis-url", default=None, help="Redis URL (default: REDIS_URL / FRAUDSTREAM_WORKER_REDIS_URL).")
@click.option("--kafka", "kafka_bootstrap_servers", default=None, help="Kafka bootstrap servers host:port[,...].")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def accept_empty(redis_url: str | None, kafka_bootstrap_servers: str | None, yes: bool) -> None:
    """After exit code 4 (Redis came back empty): write a new state epoch so the worker starts with empty state.

    Features rebuild from new traffic (over the feature window), duplicates of transactions decided before are no
    longer recognised, pending review items are gone.  Restoring Redis from its backup is the better recovery.
    """
    from fraudstream.stream.startup import StartupError

    settings = StreamSettings.from_env(redis_url=redis_url, kafka_bootstrap_servers=kafka_bootstrap_servers)
    if not settings.redis_url or not settings.kafka_bootstrap_servers:
        raise click.UsageError("pass --redis-url and --kafka, or set REDIS_URL and KAFKA_BOOTSTRAP_SERVERS")
    if not yes and not click.confirm(f"start the deployment {settings.app_id!r} (Redis prefix "
                                     f"{settings.redis_prefix!r}) again from empty state?"):
        sys.exit(EXIT_REFUSED)
    try:
        click.echo(asyncio.run(_accept_empty(settings)))
    except StartupError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.code)
