"""``fraudstream worker``: run the stream worker (a Faust app) with settings from the environment.

Before the app starts, :func:`fraudstream.stream.startup.prepare` checks the broker, Redis, the state epoch and
the topics; a problem is one line on stderr and a non-zero exit code (3 unreachable, 4 state lost, 5 topics).
"""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from fraudstream.stream.settings import StreamSettings


def _environment_help() -> str:
    rows = "\n".join(f"  {name} = {default}\n      {text}" for name, default, text in StreamSettings.describe())
    return ("Score transactions from Kafka in micro-batches, keep online features in Redis, write decisions, "
            "dead letters, review items and metrics.\n\n"
            "Options override the environment.  Environment variables (default, meaning):\n\n\b\n" + rows)


@click.command(name="worker", help=_environment_help())
@click.option("--model-dir", default=None, help="Model root (follows LATEST) or version directory.")
@click.option("--kafka", "kafka_bootstrap_servers", default=None, help="Kafka bootstrap servers host:port[,...].")
@click.option("--redis-url", default=None, help="Redis URL.")
@click.option("--metrics-port", type=int, default=None, help="Prometheus metrics port (0 = off).")
@click.option("--web-port", type=int, default=None, help="Faust web port (0 = off).")
@click.option("--log-level", default=None, help="Log level (INFO, DEBUG, ...).")
def command(**options: object) -> None:
    try:
        settings = StreamSettings.from_env(**options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from fraudstream.stream.startup import EXIT_REQUEST, StartupError, prepare

    try:
        asyncio.run(prepare(settings))
    except StartupError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.code)
    import faust

    from fraudstream.stream.app import create_app

    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    try:
        worker.execute_from_commandline()
    finally:
        if EXIT_REQUEST.code is not None:  # the worker stopped itself: state or broker data lost
            click.echo(f"error: {EXIT_REQUEST.message}", err=True)
            sys.exit(EXIT_REQUEST.code)
