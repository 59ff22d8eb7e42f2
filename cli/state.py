"""``fraudstream state``: the operator's view of the worker's state epoch, and the recoveries from an emptied Redis.

``fraudstream state show`` prints the epoch marker.  When the worker stopped with exit code 4 (Redis came back
empty), the recoveries are, best first: restore Redis from its backup (AOF/RDB; needs no command);
``fraudstream state rebuild`` (:mod:`fraudstream.stream.state.rebuild`), which replays the feature window of the
topics into Redis -- customer and terminal histories, label offsets, the stored decisions that answer re-delivered
transactions -- and writes a new epoch (review items cannot be rebuilt: they are on no topic); or
``fraudstream state accept-empty``, which writes a new epoch only, so the next start goes on from the committed
offsets with empty state (histories start empty and fill from new traffic over the feature window, 30 days,
re-delivered transactions are no longer recognised as duplicates, pending review items are gone).
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
    """The worker's state epoch in Redis, and the recoveries after exit code 4 (Redis came back empty).

    Best first: restore Redis from its backup (AOF/RDB), then start the workers; or, with the workers stopped,
    `rebuild` the state from Kafka (histories, label offsets, stored decisions; review items cannot be rebuilt);
    or `accept-empty` (start from empty state).
    """


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


@command.command(name="rebuild", short_help="Rebuild the state from Kafka after exit code 4 (not review items).")
@click.option("--redis-url", default=None, help="Redis URL (default: REDIS_URL / FRAUDSTREAM_WORKER_REDIS_URL).")
@click.option("--kafka", "kafka_bootstrap_servers", default=None, help="Kafka bootstrap servers host:port[,...].")
@click.option("--model-dir", default=None,
              help="model root or version the workers run, for its feature window (default: "
                   "FRAUDSTREAM_WORKER_MODEL_DIR).")
@click.option("--force", is_flag=True,
              help="Rebuild even though Redis holds a state epoch: overwrites the histories, label offsets and "
                   "decisions it rebuilds and writes a new epoch (workers still running stop with exit code 4).")
def rebuild(redis_url: str | None, kafka_bootstrap_servers: str | None, model_dir: str | None, force: bool) -> None:
    """After exit code 4 (Redis came back empty), with the workers stopped: rebuild the state from Kafka.

    Reads the labels topic and the transactions topic (each partition up to the consumer group's committed
    offset, plus records past it that already have a decision) and replays the feature window (the model's
    longest feature retention) through the worker's own feature update, in event-time order, labels counted from
    their known_at as live; writes the customer and terminal histories and the labels-applied offsets, restores
    the stored decisions of the decisions topic that have not expired (FRAUDSTREAM_WORKER_DECISION_TTL_S), so a
    re-delivered transaction gets its original decision, and writes a new state epoch last: then start the
    workers.  The same settings as the worker (FRAUDSTREAM_WORKER_*: topics, app id, Redis prefix, TTLs).

    Not rebuilt: the review workbench (pending review items, cases, block list), which is on no topic; restore
    Redis from its backup to keep it.  Refused (exit 2) when Redis holds a state epoch, unless --force.
    """
    import logging

    from fraudstream.stream.startup import StartupError
    from fraudstream.stream.state.rebuild import RebuildError, RebuildRefused
    from fraudstream.stream.state.rebuild import rebuild as run_rebuild

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # each failed connection: the back-off line says it
    settings = StreamSettings.from_env(redis_url=redis_url, kafka_bootstrap_servers=kafka_bootstrap_servers,
                                       model_dir=model_dir)
    if not settings.redis_url or not settings.kafka_bootstrap_servers:
        raise click.UsageError("pass --redis-url and --kafka, or set REDIS_URL and KAFKA_BOOTSTRAP_SERVERS")
    try:
        report = asyncio.run(run_rebuild(settings, force=force, say=lambda line: click.echo(line, err=True)))
    except StartupError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.code)
    except RebuildRefused as exc:
        click.echo(f"refused: {exc}", err=True)
        sys.exit(EXIT_REFUSED)
    except RebuildError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(report.summary())
