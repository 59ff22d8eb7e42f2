"""``fraudstream labels export``: the durable label log (analyst verdicts, chargebacks that settled review
items) as Parquet or CSV."""

from __future__ import annotations

from pathlib import Path

import click

from fraudstream.cli.review_common import load_settings, run_with_redis


@click.group("labels")
def command() -> None:
    """Labels kept by the review workbench."""


@command.command("export")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="File to write.")
def export(fmt: str, out: Path) -> None:
    """Write every label: handbook columns plus source, analyst, known_at, note."""
    from fraudstream.review_queue.journal import Journal
    from fraudstream.review_queue.label_export import write_labels

    settings = load_settings()

    async def work(redis):
        return await Journal(redis, settings).labels()

    entries = run_with_redis(settings, work)
    try:
        n = write_labels(entries, out, fmt)
    except OSError as exc:
        raise click.ClickException(f"{out}: {exc.strerror or exc}") from None
    click.echo(f"wrote {n} labels to {out}")
