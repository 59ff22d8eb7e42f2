"""``fraudstream replay FILE``: send a transaction file to Kafka in event-time order (and a delayed label feed)."""

from __future__ import annotations

import sys
from typing import Any

import click

#: Exit codes: bad input file or arguments, delivery errors, interrupted.
EXIT_BAD_INPUT = 2
EXIT_DELIVERY_ERRORS = 1
EXIT_INTERRUPTED = 130


class _DurationType(click.ParamType):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from fraudstream.stream.replay import parse_duration

        if isinstance(value, float):
            return value
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _DateType(click.ParamType):
    name = "date"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from fraudstream.detectors.schema import InvalidEvent, parse_timestamp

        if isinstance(value, float):
            return value
        try:
            return parse_timestamp(value, param.name if param is not None and param.name else "date")
        except InvalidEvent as exc:
            self.fail(f"{exc.reason} (expected e.g. 2018-05-10 or 2018-05-10T12:00)", param, ctx)


DURATION = _DurationType()
DATE = _DateType()


@click.command("replay")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Fixed pace in transactions per second (tx/s).")
@click.option("--speedup", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Event-time pace: event seconds per wall second (86400 = a day per second).")
@click.option("--labels-delay", type=DURATION, default=None,
              help="Also send a chargeback label feed, each label known this long after its transaction "
                   "(7d, 12h, 30m, 45s).")
@click.option("--label-feed", type=click.Choice(["fraud", "all"]), default="fraud", show_default=True,
              help="fraud: a label for each fraud only (legitimate is the default once the delay passed); "
                   "all: one label per transaction with a known TX_FRAUD.")
@click.option("--labels-lead", type=DURATION, default="1d", show_default=True,
              help="Send each label this long (event time) before it becomes known.")
@click.option("--from", "start", type=DATE, default=None, help="First transaction time (inclusive), e.g. 2018-05-10.")
@click.option("--to", "end", type=DATE, default=None, help="Last transaction time (exclusive).")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Replay only the N earliest transactions.")
@click.option("--bootstrap-servers", default=None, help="Kafka bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS).")
@click.option("--topic", default=None, help="Transactions topic (default: FRAUDSTREAM_WORKER_TRANSACTIONS_TOPIC).")
@click.option("--labels-topic", default=None, help="Labels topic (default: FRAUDSTREAM_WORKER_LABELS_TOPIC).")
@click.option("--no-progress", is_flag=True, help="No progress bar (summary only).")
def command(file: str, rate: float | None, speedup: float | None, labels_delay: float | None, label_feed: str,
            labels_lead: float,
            start: float | None, end: float | None, limit: int | None, bootstrap_servers: str | None,
            topic: str | None, labels_topic: str | None, no_progress: bool) -> None:
    """Replay FILE (CSV, CSV.GZ or Parquet in handbook columns) to the transactions topic in event-time order,
    keyed by customer id; with --labels-delay also a chargeback label feed to the labels topic, keyed by
    terminal id.  Without --rate or --speedup it sends as fast as possible."""
    from kafka.errors import KafkaError

    from fraudstream.stream.replay import ReplayInputError, replay, select_window
    from fraudstream.stream.settings import StreamSettings
    from fraudstream.stream.topics import TopicSetupError, ensure_topics
    from fraudstream.training.datasets import DataFileError, read_transactions

    if rate is not None and speedup is not None:
        raise click.UsageError("give either --rate or --speedup, not both")
    settings = StreamSettings.from_env(kafka_bootstrap_servers=bootstrap_servers, transactions_topic=topic,
                                       labels_topic=labels_topic)
    if not settings.kafka_bootstrap_servers:
        raise click.UsageError("no broker: pass --bootstrap-servers or set KAFKA_BOOTSTRAP_SERVERS")
    try:
        frame = select_window(read_transactions(file), start, end, limit)
    except DataFileError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    if len(frame) == 0:
        click.echo(f"error: {file}: no transactions in the selected range", err=True)
        sys.exit(EXIT_BAD_INPUT)
    try:
        ensure_topics(settings.kafka_bootstrap_servers, [settings.transactions_topic, settings.labels_topic],
                      settings.partitions)
        summary = replay(frame, settings, rate=rate, speedup=speedup, labels_delay_s=labels_delay,
                         labels_lead_s=labels_lead, label_feed=label_feed, progress=not no_progress)
    except ReplayInputError as exc:
        click.echo(f"error: {file}: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except (KafkaError, TopicSetupError) as exc:
        click.echo(f"error: Kafka at {settings.kafka_bootstrap_servers}: {exc!r}", err=True)
        sys.exit(EXIT_DELIVERY_ERRORS)
    click.echo(summary.format(), err=True)
    if summary.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    if summary.errors:
        sys.exit(EXIT_DELIVERY_ERRORS)
