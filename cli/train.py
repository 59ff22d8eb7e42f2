"""``fraudstream train``: features, time split, models, thresholds; writes a versioned model directory."""

from __future__ import annotations

import time
from pathlib import Path

import click
import pandas as pd


def _end_bound(to: str | None, until: str | None) -> pd.Timestamp | None:
    """Exclusive end: ``--to`` as given, ``--until`` (inclusive day) plus one day."""
    if to is not None and until is not None:
        raise click.UsageError("give --to (exclusive) or --until (inclusive), not both")
    try:
        if to is not None:
            return pd.Timestamp(to)
        if until is not None:
            return pd.Timestamp(until).normalize() + pd.Timedelta(days=1)
    except ValueError as exc:
        raise click.UsageError(f"not a date: {exc}") from None
    return None


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _no_heavy_block(region: dict, targets: dict) -> str:
    """Why the heavy stage blocks nothing: its strongest region against the target."""
    return (f"none: the strongest, {region['frauds']} frauds in {region['rows']} rows, has a precision bound of "
            f"{region['bound']:.3f} < {targets['block_precision']} ({targets['block_confidence']:.0%} confidence)")


def format_metrics(metrics: dict) -> str:
    """A short table of the validation figures."""
    valid, amb, pol = metrics["valid"], metrics["ambiguous_valid"], metrics["policy_valid"]
    rows = [
        ("training rows / frauds", f"{metrics['rows']['train']} / {metrics['rows']['train_frauds']}"),
        ("validation rows / frauds", f"{metrics['rows']['valid']} / {metrics['rows']['valid_frauds']}"),
        ("imbalance (light AP)", f"{metrics['imbalance']}  "
         + ", ".join(f"{k}={v:.4f}" for k, v in metrics["imbalance_valid_ap"].items())),
        ("calibration", metrics["calibration"]),
        ("anomaly detector (AP)", f"{metrics['anomaly_method']}  "
         + ", ".join(f"{k}={v['average_precision']:.4f}" for k, v in metrics["anomaly_valid"].items())),
        ("light AP / AUC", f"{valid['light_ap']:.4f} / {valid['light_auc']:.4f}"),
        ("heavy AP / AUC", f"{valid['heavy_ap']:.4f} / {valid['heavy_auc']:.4f}"),
        ("ambiguous rows: light AP -> heavy AP",
         f"{amb['light_ap']:.4f} -> {amb['heavy_ap']:.4f} ({amb['rows']} rows)"),
        *((("  of which below the first light BLOCK",
            f"{low['light_ap']:.4f} -> {low['heavy_ap']:.4f} ({low['rows']} rows)"),)
          if (low := metrics.get("ambiguous_unsplit_valid")) else ()),
        ("share of rows to heavy", _fmt(pol["share_to_heavy"])),
        ("block precision light / heavy",
         f"{_fmt(pol['block_precision_light'])} / {_fmt(pol['block_precision_heavy'])}"),
        *((("heavy BLOCK region", _no_heavy_block(region, metrics["targets"])),)
          if (region := metrics.get("heavy_block_region_valid")) and not region["kept"] else ()),
        ("frauds blocked / reviewed / allowed", f"{_fmt(pol['fraud_blocked_share'])} / "
         f"{_fmt(pol['fraud_reviewed_share'])} / {_fmt(pol['fraud_allowed_share'])}"),
        ("review cards/day mean / max",
         f"{pol['review_cards_per_day_mean']:.1f} / {pol['review_cards_per_day_max']:.0f}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


@click.command(name="train")
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--from", "start", default=None, metavar="DATE", help="first day of training (earlier rows: history)")
@click.option("--to", default=None, metavar="DATE", help="end of the data used (exclusive)")
@click.option("--until", default=None, metavar="DATE", help="last day of the data used (inclusive)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("models"), show_default=True,
              help="model root; the version goes to OUT/<version>/ and OUT/LATEST names it")
@click.option("--valid-days", type=click.IntRange(min=1), default=None, help="validation days [7]")
@click.option("--review-capacity", type=click.FloatRange(min=0, min_open=True), default=None,
              help="analyst capacity (cards/day) [100]")
@click.option("--seed", type=int, default=None, help="random seed [0]")
@click.option("--labels", "labels_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="label file from `fraudstream labels export`: its labels replace TX_FRAUD (an analyst label "
                   "counts from its known_at; a later chargeback wins)")
@click.option("--label-times", "label_times_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="label file (`fraudstream backtest --labels-out`): each fraud counts in the features "
                                 "from its earliest fraud label's known_at, not a fixed delay after it")
def command(data: Path, start: str | None, to: str | None, until: str | None, out: Path, valid_days: int | None,
            review_capacity: float | None, seed: int | None, labels_path: Path | None,
            label_times_path: Path | None) -> None:
    """Train the cascade on DATA (CSV / Parquet in handbook columns with TX_FRAUD); settings also from
    FRAUDSTREAM_TRAIN_* variables."""
    from fraudstream.detectors.bundle import save_bundle
    from fraudstream.detectors.features.batch import FeatureInputError
    from fraudstream.detectors.rules import RulesConfigError
    from fraudstream.training.datasets import DataFileError, read_transactions
    from fraudstream.training.progress import ConsoleProgress
    from fraudstream.training.splits import SplitError
    from fraudstream.training.stage_table import format_metrics_stage_table
    from fraudstream.training.train import TrainingDataError, TrainSettings, train_from_frame

    end = _end_bound(to, until)
    try:
        settings = TrainSettings.from_env(valid_days=valid_days, review_capacity=review_capacity, seed=seed)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    started = time.monotonic()
    progress = ConsoleProgress()
    progress.phase(f"reading {data}")
    try:
        frame = read_transactions(data, require_labels=True)
    except DataFileError as exc:
        raise click.ClickException(str(exc)) from None
    progress.phase(f"read {len(frame)} rows")
    if labels_path is not None:
        from fraudstream.training.labels import merge_labels, read_labels

        try:
            frame, merged = merge_labels(frame, read_labels(labels_path), end)
        except DataFileError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(merged.describe(), err=True)
    if label_times_path is not None:
        from fraudstream.training.label_model import with_fraud_known_at
        from fraudstream.training.labels import read_labels

        try:
            frame = with_fraud_known_at(frame, read_labels(label_times_path), settings.feature_config.label_delay_s)
        except DataFileError as exc:
            raise click.ClickException(str(exc)) from None
    try:
        result = train_from_frame(frame, settings, start=start, end=end, progress=progress)
    except (SplitError, TrainingDataError, FeatureInputError, RulesConfigError) as exc:
        raise click.ClickException(f"{data}: {exc}") from None
    directory = save_bundle(result.cascade, out, result.manifest_extras)
    split = result.split.describe()
    click.echo(f"train {split['train']} | gap {split['gap_days']} days | valid {split['valid']}")
    click.echo(format_metrics(result.metrics))
    click.echo(format_metrics_stage_table(result.metrics))
    click.echo("thresholds: " + ", ".join(f"{k}={v:.4f}" for k, v in result.cascade.thresholds.to_dict().items()))
    click.echo(f"trained in {time.monotonic() - started:.1f} s; wrote {directory}")
