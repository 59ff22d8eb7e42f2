"""``fraudstream backtest``: a period of a labelled file through the live scoring path, feedback loop included."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click
import pandas as pd


def _day(text: str, option: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(text)
    except ValueError:
        raise click.BadParameter(f"not a date: {text!r}", param_hint=option) from None


def _duration_s(text: str, option: str) -> float:
    from fraudstream.training.label_model import LabelModelError, parse_duration_s

    try:
        return parse_duration_s(text)
    except LabelModelError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _side_path(out: Path, name: str) -> Path:
    """Where run ``name`` writes its rows: ``scores.csv`` -> ``scores.<name>.csv`` (``scores.challenger1.csv``)."""
    suffixes = "".join(out.suffixes)
    base = out.name[: len(out.name) - len(suffixes)] if suffixes else out.name
    return out.with_name(f"{base}.{name}{suffixes}")


@click.command(name="backtest")
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="champion model: root (follows LATEST) or a version directory")
@click.option("--challenger", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="another model run on the same period and compared with the champion (repeatable)")
@click.option("--from", "start", required=True, metavar="DATE", help="first time decided (inclusive)")
@click.option("--to", "end", required=True, metavar="DATE", help="end of the period (exclusive)")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="the champion's decisions, columns of `fraudstream score` (.parquet / .pq, else CSV); "
                   "challengers write OUT with .challengerN before the suffix")
@click.option("--labels-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write the champion's labels (chargebacks and verdicts, with when each was known) as a "
                   "label file (.parquet, else CSV) for `fraudstream train --label-times`")
@click.option("--labels-delay", default="7d", show_default=True,
              help="chargeback delay: fixed (7d), uniform (3d..10d) or gamma:MEAN,STD (gamma:7d,2d)")
@click.option("--analyst-delay", default="1h", show_default=True, help="verdict time after a case opens")
@click.option("--review-capacity", type=click.IntRange(min=0), default=100, show_default=True,
              help="cases (cards) the analysts work per day")
@click.option("--review-budget", type=click.IntRange(min=0), default=0, show_default=True,
              help="the worker's review budget (review cases a day may open; past it a REVIEW of another card "
                   "becomes ALLOW; 0 = none, as the worker's default)")
@click.option("--no-analysts", is_flag=True, help="no analysts: labels come from chargebacks only")
@click.option("--versus-no-analysts", is_flag=True,
              help="also run the champion without analysts and compare with it (the first column)")
@click.option("--versus-no-anomaly", is_flag=True,
              help="also run the champion with its policy ignoring the anomaly score (no anomaly-only REVIEW, "
                   "the light ALLOW not held back by it) and compare with it")
@click.option("--versus-no-budget", is_flag=True,
              help="also run the champion without the review budget and compare with it (needs --review-budget)")
@click.option("--analyst-error", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="probability that a verdict contradicts the file's label")
@click.option("--case-expiry", default="7d", show_default=True, help="a case not worked by then expires")
@click.option("--warmup-days", type=click.IntRange(min=0), default=None,
              help="days before --from that feed the features only [as far back as the features look: 38]")
@click.option("--block-mode", type=click.Choice(["reissue", "card"]), default="reissue", show_default=True,
              help="reissue: a confirmed card's old number is dead (the frauds of the compromise that got it "
                   "listed are blocked; a later, separate attack has the new number); card: "
                   "every later transaction of the card is blocked for --block-days")
@click.option("--block-days", type=click.FloatRange(min=0), default=14.0, show_default=True,
              help="card mode: days a confirmed card stays blocked (0 = for ever)")
@click.option("--chargeback-blocks/--no-chargeback-blocks", default=True, show_default=True,
              help="a chargeback also puts its card on the block list (the issuer closing it), not only an "
                   "analyst's fraud verdict (as the review service does)")
@click.option("--step", default="1h", show_default=True, help="longest event-time step of the loop")
@click.option("--bootstrap", type=click.IntRange(min=10), default=200, show_default=True,
              help="bootstrap resamples (days) of the challenger comparison")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the label model and analysts")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write the figures as JSON")
def command(data: Path, model: Path, challenger: tuple[Path, ...], start: str, end: str, out: Path,
            labels_out: Path | None, labels_delay: str, analyst_delay: str, review_capacity: int, review_budget: int,
            no_analysts: bool, versus_no_analysts: bool, versus_no_anomaly: bool, versus_no_budget: bool,
            analyst_error: float, case_expiry: str, warmup_days: int | None, block_mode: str, block_days: float,
            chargeback_blocks: bool, step: str, bootstrap: int, seed: int, json_path: Path | None) -> None:
    """Backtest DATA (labelled, handbook columns) from START to END in event time through the worker's own core
    (features, rules, block list, cascade, review items) on an in-memory store, with chargebacks and simulated
    analysts working review cases per card as labels.  Data simulated with novel attacks (``fraudstream simulate
    --novel-start``) gets a table per run of what it flagged of each attack family, next to the light model and
    the anomaly detector alone at the run's legitimate flag rate."""
    from fraudstream.detectors.bundle import ModelBundleError, load_bundle
    from fraudstream.training.analysts import AnalystSettings
    from fraudstream.training.backtest import BacktestError, BacktestSettings, run_backtest
    from fraudstream.training.backtest_output import write_backtest_labels, write_backtest_scores
    from fraudstream.training.backtest_report import compare, comparison_json, format_comparison
    from fraudstream.training.datasets import DataFileError, read_transactions
    from fraudstream.training.label_model import ChargebackDelay, LabelModelError
    from fraudstream.training.novel import backtest_families, format_backtest_families
    from fraudstream.training.progress import ConsoleProgress
    from fraudstream.training.scoring import ScoringError

    try:
        delay = ChargebackDelay.parse(labels_delay)
    except LabelModelError as exc:
        raise click.BadParameter(str(exc), param_hint="--labels-delay") from None
    try:
        analysts = None if no_analysts else AnalystSettings(
            capacity_cards_per_day=review_capacity, delay_s=_duration_s(analyst_delay, "--analyst-delay"),
            case_expiry_s=_duration_s(case_expiry, "--case-expiry"), error_rate=analyst_error, seed=seed)
        settings = BacktestSettings(_day(start, "--from"), _day(end, "--to"), warmup_days=warmup_days,
                                    labels_delay=delay, analysts=analysts, step_s=_duration_s(step, "--step"),
                                    block_mode=block_mode, block_days=block_days,
                                    block_on_chargeback=chargeback_blocks, review_budget=review_budget, seed=seed)
    except (BacktestError, ValueError) as exc:
        if isinstance(exc, click.ClickException):
            raise
        raise click.UsageError(str(exc)) from None
    progress = ConsoleProgress()
    bundles = []
    for directory in (model, *challenger):
        try:
            bundles.append(load_bundle(directory))
        except ModelBundleError as exc:
            raise click.ClickException(str(exc)) from None
    progress.phase(f"reading {data}")
    try:
        frame = read_transactions(data, require_labels=True)
    except DataFileError as exc:
        raise click.ClickException(str(exc)) from None
    if versus_no_analysts and no_analysts:
        raise click.UsageError("--versus-no-analysts compares with analysts: drop --no-analysts")
    baselines = [flag for flag, on in (("--versus-no-analysts", versus_no_analysts),
                                       ("--versus-no-anomaly", versus_no_anomaly),
                                       ("--versus-no-budget", versus_no_budget)) if on]
    if len(baselines) > 1:
        raise click.UsageError(f"{' and '.join(baselines)}: one baseline a run (the report compares every run with "
                               "the first)")
    if versus_no_budget and review_budget == 0:
        raise click.UsageError("--versus-no-budget compares with a review budget: give --review-budget N")
    jobs = [("champion", bundles[0].cascade, settings, out)]
    jobs += [(f"challenger{i}", b.cascade, settings, _side_path(out, f"challenger{i}"))
             for i, b in enumerate(bundles[1:], start=1)]
    if versus_no_anomaly:
        jobs.insert(0, ("no-anomaly", bundles[0].cascade.without_anomaly(), settings,
                        _side_path(out, "no-anomaly")))
    if versus_no_budget:
        jobs.insert(0, ("no-budget", bundles[0].cascade, replace(settings, review_budget=0),
                        _side_path(out, "no-budget")))
    if versus_no_analysts:
        jobs.insert(0, ("no-analysts", bundles[0].cascade, replace(settings, analysts=None),
                        _side_path(out, "no-analysts")))
    names = [name for name, _, _, _ in jobs]
    runs = []
    for name, cascade, run_settings, path in jobs:
        progress.phase(f"{name}: model {cascade.version}")
        try:
            runs.append(run_backtest(frame, cascade, run_settings, progress))
        except BacktestError as exc:
            raise click.ClickException(f"{data}: {exc}") from None
        try:
            write_backtest_scores(runs[-1], path)
        except ScoringError as exc:
            raise click.ClickException(str(exc)) from None
        progress.phase(f"{name}: wrote {len(runs[-1].decisions):,} rows to {path}")
        if name == "champion" and labels_out is not None:
            try:
                write_backtest_labels(runs[-1], labels_out)
            except ScoringError as exc:
                raise click.ClickException(str(exc)) from None
            progress.phase(f"{name}: wrote {len(runs[-1].labels):,} labels to {labels_out}")
    progress.phase("figures" + (f" and {bootstrap} bootstrap resamples" if len(runs) > 1 else ""))
    comparison = compare(runs, names, n_bootstrap=bootstrap, seed=seed)
    click.echo(format_comparison(comparison, runs))
    families = {name: backtest_families(run.decisions) for name, run in zip(names, runs)}
    for name, figures in families.items():
        if figures is not None:
            click.echo("\n" + format_backtest_families(figures, name))
    if json_path is not None:
        payload = comparison_json(comparison, runs)
        payload["novel_families"] = {name: f.to_json() for name, f in families.items() if f is not None}
        json_path.write_text(json.dumps(payload, indent=2) + "\n")
        progress.phase(f"wrote {json_path}")
