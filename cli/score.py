"""``fraudstream score``: offline scoring of a date range of a transaction file with a model directory."""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.command(name="score")
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", "model", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("models"),
              show_default=True, help="model root (follows LATEST) or a version directory")
@click.option("--from", "start", required=True, metavar="DATE", help="first time scored (inclusive)")
@click.option("--to", "end", required=True, metavar="DATE", help="end of the scored period (exclusive)")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="output file: .parquet / .pq for Parquet, anything else CSV")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=None, help="rows per scoring call [50000]")
def command(data: Path, model: Path, start: str, end: str, out: Path, chunk_rows: int | None) -> None:
    """Score the rows of DATA with START <= TX_DATETIME < END; earlier rows feed the features only."""
    from fraudstream.detectors.bundle import ModelBundleError, load_bundle
    from fraudstream.detectors.features.batch import FeatureInputError
    from fraudstream.training.datasets import DataFileError, read_transactions
    from fraudstream.training.scoring import (
        DEFAULT_CHUNK_ROWS,
        ScoringError,
        decision_counts,
        score_frame,
        write_scores,
    )

    started = time.monotonic()
    try:
        bundle = load_bundle(model)
    except ModelBundleError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        frame = read_transactions(data)
    except DataFileError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        scores = score_frame(frame, bundle, start, end, chunk_rows or DEFAULT_CHUNK_ROWS)
        path = write_scores(scores, out)
    except (ScoringError, FeatureInputError) as exc:
        raise click.ClickException(f"{data}: {exc}") from None
    counts = decision_counts(scores)
    click.echo(f"model {bundle.version}: scored {len(scores)} rows in {time.monotonic() - started:.1f} s -> {path}")
    for name, count in counts.items():
        click.echo(f"{name:<7} {count:>9}  ({count / max(len(scores), 1):.2%})")
