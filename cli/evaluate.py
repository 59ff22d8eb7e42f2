"""``fraudstream evaluate``: the handbook protocol on a labelled transaction file, one table on stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from fraudstream.training.progress import Progress


@click.command(name="evaluate")
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--folds", type=click.IntRange(min=1), default=None, help="prequential folds [FRAUDSTREAM_EVAL_FOLDS, 4]")
@click.option("--anchor", default=None, metavar="DATE",
              help="first day of fold 0's training week (ISO date); default: fold 0's test week ends on the last "
                   "day of the data [FRAUDSTREAM_EVAL_ANCHOR]")
@click.option("--review-capacity", type=click.IntRange(min=1), default=None,
              help="cards analysts review per day (cards/day) [FRAUDSTREAM_EVAL_REVIEW_CAPACITY, 100]")
@click.option("--seed", type=int, default=None, help="random seed of training [FRAUDSTREAM_EVAL_SEED, 0]")
@click.option("--protocol", type=click.Choice(["handbook", "all-cards"]), default=None,
              help="test set: handbook = cards known to be compromised by a test day are left out of it; all-cards "
                   "= every transaction [FRAUDSTREAM_EVAL_PROTOCOL, handbook]")
@click.option("--training", type=click.Choice(["week", "all-history"]), default=None,
              help="fit each fold on its training week (the handbook) or on all history whose labels are known "
                   "when the test week starts [FRAUDSTREAM_EVAL_TRAINING, week]")
@click.option("--novel", is_flag=True, default=False,
              help="instead of the folds: train before the first novel attack (simulate --novel-start) and report "
                   "per family what the cascade, the cascade without its detector, the light model alone and the "
                   "detector alone flag at the cascade's legit flag rate")
@click.option("--held-out", type=click.Choice(["4", "5", "6", "7"]), default="5", show_default=True,
              help="with --novel: the family left out of every choice, reported as such")
@click.option("--review-budget", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="with --novel: at most N review cases a day (the worker's FRAUDSTREAM_WORKER_REVIEW_CASES_PER_DAY); "
                   "REVIEWs past it become ALLOW, first come first served (0 = none)")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write the full report (every fold) as JSON to this file")
def command(data: Path, folds: int | None, anchor: str | None, review_capacity: int | None, seed: int | None,
            protocol: str | None, training: str | None, novel: bool, held_out: str, review_budget: int,
            json_path: Path | None) -> None:
    """Evaluate on DATA (CSV / Parquet in handbook columns, with TX_FRAUD): AUC, AP, CP@100 and cascade figures.
    Settings also from FRAUDSTREAM_EVAL_* variables; the models' training settings from FRAUDSTREAM_TRAIN_*."""
    from fraudstream.training.datasets import DataFileError, read_transactions
    from fraudstream.training.evaluate import EvaluationSettings, ProtocolError, evaluate
    from fraudstream.training.progress import ConsoleProgress
    from fraudstream.training.report import format_report
    from fraudstream.training.train import TrainSettings

    if review_budget and not novel:
        raise click.UsageError("--review-budget goes with --novel (the folds' cascade figures have no budget)")
    try:
        settings = EvaluationSettings.from_env(folds=folds, anchor=anchor, review_capacity=review_capacity,
                                               seed=seed, protocol=protocol, training=training)
        train_settings = TrainSettings.from_env(review_capacity=settings.review_capacity, seed=settings.seed)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    progress = ConsoleProgress()
    progress.phase(f"reading {data}")
    try:
        frame = read_transactions(data, require_labels=True)
    except DataFileError as exc:
        raise click.ClickException(str(exc)) from None
    if novel:
        from fraudstream.training.novel import NovelAttackError, evaluate_novel, format_novel_report

        try:
            novel_report = evaluate_novel(frame, settings, train_settings, held_out=int(held_out), progress=progress,
                                          review_budget=review_budget)
        except NovelAttackError as exc:
            raise click.ClickException(f"{data}: {exc}") from None
        click.echo(format_novel_report(novel_report))
        _write_json(json_path, novel_report.to_json(), progress)
        return
    try:
        report = evaluate(frame, settings, progress=progress, train_settings=train_settings)
    except ProtocolError as exc:
        raise click.ClickException(f"{data}: {exc}") from None
    click.echo(format_report(report))
    _write_json(json_path, report.to_json(), progress)


def _write_json(path: Path | None, payload: object, progress: Progress) -> None:
    if path is not None:
        path.write_text(json.dumps(payload, indent=2) + "\n")
        progress.phase(f"wrote {path}")
    progress.phase("done")
