"""Training the cascade: models on a training period, calibration and thresholds on a validation period.

:func:`fit_cascade` takes frames that already carry the feature columns; :func:`train_from_frame` computes the
features (batch path) on a raw transaction frame, splits it by time with a label-delay gap and fits.

Choices made on validation (and recorded in ``cascade.metrics``):

* class imbalance: ``none`` / ``scale_pos_weight`` / ``downsample``, by the light model's validation average
  precision (AP);
* probability calibration: isotonic / Platt, by the Brier score of a calibration fitted on one half of the
  validation days and measured on the other half (both ways, averaged);
* anomaly detector: by default ECOD alone (``DEFAULT_ANOMALY_METHODS``: on the seed-0 selection families 4, 6
  and 7 of the simulator it flags far more than HBOS, which the criterion below prefers on validation); given
  several (``anomaly_methods``, e.g. ECOD / IForest / COPOD / HBOS), among those whose one-row scoring call
  takes at most ``anomaly_max_call_ms`` (the stream scores small micro-batches; call times are recorded), by
  what it adds: its average precision on the validation frauds the light model misses at a 1% legitimate flag rate
  (:mod:`fraudstream.training.detector_choice`; ``anomaly_choice="ap"``: by AP on all validation frauds);
* heavy model: reads every feature, the card's recent sequence too (the light model reads the screening features
  before it, ``FeatureConfig.screening_feature_names``); fitted on the training rows a provisional light stage
  routes to it (``heavy_rows="band"``, see :func:`_heavy_band`; out-of-fold light scores) and calibrated on the
  validation rows it routes, so that it specializes in the ambiguous band; its calibration is Platt's whatever the
  light model's (``heavy_calibration``: isotonic regression on a band of a few hundred rows ties the band's top into
  one value, which leaves no region for a BLOCK threshold and no cut for an ALLOW one); thresholds that validation
  is too small to measure fall back to their documented defaults with a :class:`ThresholdFallbackWarning`
  (``metrics["threshold_fallbacks"]``).

``metrics["stage_table_valid"]`` holds the per-stage table of the validation period
(:mod:`fraudstream.training.stage_table`, rules apart).
"""

from __future__ import annotations

import secrets
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BeforeValidator, Field
from pydantic_settings import NoDecode, SettingsConfigDict
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from fraudstream.detectors.cascade.calibration import (
    CalibrationTargets,
    allow_threshold,
    block_threshold,
    choose_thresholds,
    light_block_candidates,
    policy_report,
    strongest_block_region,
)
from fraudstream.detectors.cascade.cascade import Cascade
from fraudstream.detectors.cascade.policy import NEVER, CascadePolicy, Thresholds, route_light
from fraudstream.detectors.drift import reference_histograms, watched_signals
from fraudstream.detectors.env_settings import EnvSettings
from fraudstream.detectors.features.definition import (
    ANOMALY_FEATURE_SIDES,
    ANOMALY_FEATURES,
    DEFAULT_CONFIG,
    FeatureConfig,
)
from fraudstream.detectors.models.anomaly import (
    ANOMALY_METHODS,
    DEFAULT_MAX_CALL_MS,
    AnomalyStage,
    select_anomaly_model,
)
from fraudstream.detectors.models.heavy import HeavyModel, HeavyStage, heavy_feature_names, heavy_inputs
from fraudstream.detectors.models.light import (
    CALIBRATION_CHOICES,
    IMBALANCE_CHOICES,
    LightModel,
    LightStage,
    ProbabilityCalibrator,
)
from fraudstream.detectors.rules import DEFAULT_RULES_PATH, RuleConfig, RuleSet
from fraudstream.detectors.schema import CUSTOMER_ID, TX_DATETIME, TX_FRAUD, datetime_to_epoch_seconds
from fraudstream.training.detector_choice import DEFAULT_LEGIT_FLAG_RATE, added_value_criterion, ranking_key
from fraudstream.training.progress import SILENT, Progress
from fraudstream.training.splits import TimeSplit, make_split, split_frame
from fraudstream.training.stage_table import stage_table, stage_table_to_metrics

ENV_PREFIX = "FRAUDSTREAM_TRAIN_"
#: The anomaly detector trained by default, chosen on the simulator's seed-0 novel families 4, 6, 7 (ECOD vs HBOS,
#: the detector the validation criterion picked, with the same thresholds: 70 / 44 / 72% against 27 / 24 / 10%
#: of their transactions flagged).
DEFAULT_ANOMALY_METHODS: tuple[str, ...] = ("ECOD",)
AUTO = "auto"


class TrainingDataError(ValueError):
    """Training frames that cannot be used (missing columns, non-finite features, a single class)."""


def _none_or_int(value: Any) -> Any:
    """``None`` for an empty or ``none`` variable, else the value (validated as an int)."""
    if isinstance(value, str) and value.strip().lower() in ("", "none"):
        return None
    return value


def _comma_list(value: Any) -> Any:
    """A comma-separated variable as a tuple of its non-empty items."""
    if isinstance(value, str):
        return tuple(m.strip() for m in value.split(",") if m.strip())
    return value


class TrainSettings(EnvSettings):
    """Settings of ``fraudstream train`` and of :func:`fit_cascade`.

    Every field but ``feature_config`` can be set from ``FRAUDSTREAM_TRAIN_<FIELD>`` (see ``from_env``);
    ``anomaly_methods`` is then a comma-separated list.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, arbitrary_types_allowed=True)

    valid_days: int = Field(7, ge=1, description="days of the validation period")
    gap_days: Annotated[int | None, BeforeValidator(_none_or_int)] = Field(
        None, ge=0, description="days between training and validation; None = the label delay")
    train_days: Annotated[int | None, BeforeValidator(_none_or_int)] = Field(
        None, ge=1, description="days of training (None = all before the gap)")
    review_capacity: float = Field(CalibrationTargets.review_capacity, gt=0,
                                   description="analyst capacity (cards a day)")
    capacity_statistic: str = Field(CalibrationTargets.capacity_statistic,
                                    description='"max" or "mean" of the daily review cards')
    block_precision: float = Field(CalibrationTargets.block_precision,
                                   description="minimum precision of each BLOCK region on validation")
    block_confidence: float = Field(
        CalibrationTargets.block_confidence, ge=0, lt=1,
        description="one-sided confidence of the precision bound each BLOCK region must reach on validation "
                    "(Wilson score interval; <= 0.5 = the measured precision itself)")
    allow_catch_loss: float = Field(
        CalibrationTargets.allow_catch_loss,
        description="largest share of caught validation frauds the light ALLOW region may cost")
    anomaly_review_min: float = Field(
        CalibrationTargets.anomaly_review_min, ge=0, le=1,
        description="lowest anomaly score (rank among legitimate training rows) an anomaly-only REVIEW needs")
    anomaly_review_share: float = Field(
        CalibrationTargets.anomaly_review_share, ge=0, le=1,
        description="share of the capacity kept for anomaly-only reviews while the heavy REVIEW region is chosen")
    review_headroom: float = Field(
        CalibrationTargets.review_headroom, ge=0, lt=1,
        description="share of the capacity the REVIEW regions leave free on validation, for the cards an attack "
                    "adds to a day's load")
    max_legit_flag_rate: float = Field(
        CalibrationTargets.max_legit_flag_rate, ge=0, lt=1,
        description="share of legitimate validation rows flagged up to which anomaly-only reviews fill the "
                    "capacity the heavy stage leaves unused (0 = no filling)")
    heavy_allow_fraud_rate: float = Field(
        CalibrationTargets.heavy_allow_fraud_rate, ge=0, lt=1,
        description="the heavy stage ALLOWs the lowest-scored rows of its band while their fraud share stays at "
                    "most this (0 = off: the REVIEW region reaches down as far as its precision and the capacity "
                    "allow)")
    split_candidates: int = Field(
        CalibrationTargets.split_candidates, ge=0,
        description="higher light BLOCK thresholds tried, each leaving the unsure part of the light BLOCK region to "
                    "the heavy model (0 = the light stage blocks all it can at the block precision)")
    block_split_loss: float = Field(
        CalibrationTargets.block_split_loss, ge=0, le=1,
        description="share of the most frauds blocked that a split of the BLOCK regions may give up for fewer "
                    "legitimate transactions blocked")
    review_min_precision: float = Field(
        CalibrationTargets.review_min_precision, ge=0, le=1,
        description="precision the heavy REVIEW region must keep on validation (the rest of the band is ALLOWed "
                    "or left to the anomaly reviews)")
    imbalance: str = Field(AUTO, description='"auto" or one of IMBALANCE_CHOICES')
    negatives_per_positive: float = Field(20.0, description="kept negatives per fraud when down-sampling")
    calibration: str = Field(AUTO, description='"auto", "isotonic" or "platt"')
    anomaly_methods: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)] = Field(
        DEFAULT_ANOMALY_METHODS, description=f"anomaly detectors to choose from (comma-separated; any of "
                                             f"{', '.join(ANOMALY_METHODS)})")
    anomaly_max_rows: int = Field(20_000, description="legitimate rows the anomaly detector is fitted on")
    anomaly_max_call_ms: float = Field(
        DEFAULT_MAX_CALL_MS, description="budget of one anomaly scoring call on one row (ms); inf = none")
    light_trees: int = Field(300, ge=1, description="trees of the light model")
    light_depth: int = Field(4, ge=1, description="depth of the light model's trees")
    light_learning_rate: float = Field(0.05, gt=0, description="learning rate of the light model")
    light_subsample: float = Field(0.8, gt=0, le=1, description="row and column share sampled per tree")
    anomaly_choice: str = Field(
        "added", description='"added": choose the detector on the validation frauds the light model misses; '
                             '"ap": on its average precision over all validation frauds')
    anomaly_legit_flag_rate: float = Field(
        DEFAULT_LEGIT_FLAG_RATE, gt=0, lt=1,
        description="share of legitimate validation rows the light model and the detector may flag when "
                    "the detector is chosen on what it adds")
    heavy_trees: int = Field(400, ge=1, description="trees of the heavy model")
    heavy_depth: int = Field(4, ge=1, description="depth of the heavy model's trees")
    heavy_imbalance: str = Field("none", description='the heavy model\'s own treatment ("same" = the light model\'s)')
    heavy_calibration: Literal["auto", "same", "isotonic", "platt"] = Field(
        "platt", description='the heavy model\'s calibration: "platt" (strictly increasing: keeps the model\'s '
                             'ranking of its band, so thresholds can cut anywhere in it), "auto" (chosen like the '
                             'light model\'s, by cross-fitted Brier score on the band\'s validation rows), "same" '
                             '(the light model\'s) or "isotonic"')
    stacking_folds: int = Field(3, ge=2, description="folds of the out-of-fold light scores the heavy model uses")
    heavy_rows: str = Field(
        "band", description='"band": fit the heavy model on the training rows the light stage would route to it; '
                            '"all": on every training row')
    seed: int = Field(0, description="random seed")
    n_jobs: int = Field(2, ge=1, description="threads")
    rules_path: str = Field("", description='rules JSON file ("" = the shipped default)')
    feature_config: FeatureConfig = Field(DEFAULT_CONFIG, exclude=True, description="feature definition (code only)")

    def targets(self) -> CalibrationTargets:
        return CalibrationTargets(
            block_precision=self.block_precision, block_confidence=self.block_confidence,
            review_capacity=self.review_capacity,
            capacity_statistic=self.capacity_statistic, allow_catch_loss=self.allow_catch_loss,
            anomaly_review_min=self.anomaly_review_min, anomaly_review_share=self.anomaly_review_share,
            max_legit_flag_rate=self.max_legit_flag_rate, review_headroom=self.review_headroom,
            review_min_precision=self.review_min_precision, heavy_allow_fraud_rate=self.heavy_allow_fraud_rate,
            split_candidates=self.split_candidates, block_split_loss=self.block_split_loss,
        )

    def effective_gap_days(self) -> int:
        return self.feature_config.label_delay_days if self.gap_days is None else self.gap_days


def anomaly_columns(feature_names: list[str]) -> tuple[int, ...]:
    """Indices of the anomaly detector's behavioural features in the model input (all present in the set)."""
    return tuple(feature_names.index(name) for name in ANOMALY_FEATURES if name in feature_names)


def anomaly_sides(feature_names: list[str]) -> tuple[str, ...]:
    """The anomalous tail of each of :func:`anomaly_columns`' features, in the same order."""
    return tuple(ANOMALY_FEATURE_SIDES[name] for name in ANOMALY_FEATURES if name in feature_names)


@dataclass
class TrainResult:
    """What :func:`train_from_frame` produced: the cascade, its metrics and the data it saw."""

    cascade: Cascade
    metrics: dict[str, Any]
    split: TimeSplit
    manifest_extras: dict[str, Any]


def make_version(now: datetime | None = None) -> str:
    """A new model version name: UTC time then a random suffix, e.g. ``20240102T030405Z-a1b2c3``."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def _matrix(frame: pd.DataFrame, names: list[str], what: str) -> tuple[np.ndarray, np.ndarray]:
    missing = [c for c in names + [TX_FRAUD] if c not in frame.columns]
    if missing:
        raise TrainingDataError(f"{what} frame: missing column(s) {missing}")
    X = frame[names].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise TrainingDataError(f"{what} frame: non-finite value in column {names[col]} at row {frame.index[row]}")
    y = frame[TX_FRAUD].to_numpy()
    if not np.isin(y, (0, 1)).all():
        row = int(np.flatnonzero(~np.isin(y, (0, 1)))[0])
        raise TrainingDataError(f"{what} frame: {TX_FRAUD} must be 0/1, row {frame.index[row]} holds {y[row]!r}")
    y = y.astype(np.int8)
    if y.min(initial=1) == y.max(initial=0):
        raise TrainingDataError(f"{what} frame: {TX_FRAUD} holds a single class ({len(y)} rows); need both")
    return X, y


def _safe_ap(y: np.ndarray, s: np.ndarray) -> float:
    return float(average_precision_score(y, s)) if 0 < y.sum() < y.size else float("nan")


def _safe_auc(y: np.ndarray, s: np.ndarray) -> float:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < y.size else float("nan")


def _light(settings: TrainSettings, imbalance: str, calibration: str = "isotonic") -> LightModel:
    return LightModel(
        n_estimators=settings.light_trees, max_depth=settings.light_depth, imbalance=imbalance,
        learning_rate=settings.light_learning_rate, subsample=settings.light_subsample,
        colsample_bytree=settings.light_subsample,
        negatives_per_positive=settings.negatives_per_positive, calibration=calibration, seed=settings.seed,
        n_jobs=settings.n_jobs,
    )


def _choose_calibration(raw: np.ndarray, y: np.ndarray, timestamp: np.ndarray) -> tuple[str, dict[str, float]]:
    """Cross-fitted Brier score of each calibration method on the validation days (halves by time)."""
    half = timestamp < np.median(timestamp)
    table: dict[str, float] = {}
    for method in CALIBRATION_CHOICES:
        losses = []
        for fit_rows in (half, ~half):
            test_rows = ~fit_rows
            if not (0 < y[fit_rows].sum() < fit_rows.sum()) or not test_rows.any():
                continue
            cal = ProbabilityCalibrator(method).fit(raw[fit_rows], y[fit_rows])
            losses.append(brier_score_loss(y[test_rows], np.clip(cal.transform(raw[test_rows]), 0, 1)))
        table[method] = float(np.mean(losses)) if losses else float("nan")
    best = min(CALIBRATION_CHOICES, key=lambda m: table[m] if np.isfinite(table[m]) else np.inf)
    return best, table


def _out_of_fold_light(X: np.ndarray, y: np.ndarray, model: LightModel, folds: int) -> np.ndarray:
    """Raw light scores of every training row from a light model fitted without that row's block (by time)."""
    out = np.empty(X.shape[0])
    blocks = np.array_split(np.arange(X.shape[0]), max(folds, 2))
    for block in blocks:
        keep = np.ones(X.shape[0], dtype=bool)
        keep[block] = False
        fold_model = LightModel(**model.get_params())
        if 0 < y[keep].sum() < keep.sum():
            out[block] = fold_model.fit(X[keep], y[keep]).raw_score(X[block])
        else:
            out[block] = model.raw_score(X[block])
    return out


class ThresholdFallbackWarning(UserWarning):
    """A threshold was set to its documented default because validation had too few frauds to measure it."""


def _heavy_band(settings: TrainSettings, targets: CalibrationTargets, light_tr: np.ndarray, anomaly_tr: np.ndarray,
                y_tr: np.ndarray, light_va: np.ndarray, anomaly_va: np.ndarray, y_va: np.ndarray,
                ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Training and validation rows the heavy model is fitted and calibrated on, and what was chosen.

    With ``heavy_rows="band"``, the rows a provisional light stage routes to the heavy model: its BLOCK threshold
    the highest calibration may choose (:func:`light_block_candidates`: the heavy model learns the unsure part of
    the light BLOCK region too, which a split leaves to it), its ALLOW threshold the highest light score whose
    ALLOW region holds at most ``allow_catch_loss`` of the validation frauds (calibration later picks the final
    one among complete policies); training rows are routed by their out-of-fold light scores.  A band with fewer than
    ``min_threshold_frauds`` frauds (or a single class) falls back to every row.
    """
    every_tr, every_va = np.ones(y_tr.size, dtype=bool), np.ones(y_va.size, dtype=bool)
    if settings.heavy_rows == "all":
        return every_tr, every_va, {"rows": "all", "train_rows": int(y_tr.size), "train_frauds": int(y_tr.sum())}
    if settings.heavy_rows not in ("band", "routed"):
        raise ValueError(f"heavy_rows: expected 'band', 'routed' or 'all', got {settings.heavy_rows!r}")
    t_block = float(light_block_candidates(light_va, y_va, targets)[-1])
    eligible = (light_va < t_block) & (anomaly_va <= targets.anomaly_allow_max)
    t_allow = allow_threshold(light_va, y_va, eligible, targets.allow_catch_loss * float(y_va.sum()))
    policy = CascadePolicy(Thresholds(t_block_light=t_block, t_allow_light=t_allow,
                                      t_anomaly_allow=targets.anomaly_allow_max))
    band_tr = policy.first_pass({"light": light_tr, "anomaly": anomaly_tr}).to_heavy
    band_va = policy.first_pass({"light": light_va, "anomaly": anomaly_va}).to_heavy
    info: dict[str, Any] = {"rows": "band", "t_block_light": t_block, "t_allow_light": t_allow,
                            "train_rows": int(band_tr.sum()), "train_frauds": int(y_tr[band_tr].sum()),
                            "valid_rows": int(band_va.sum()), "valid_frauds": int(y_va[band_va].sum())}
    minimum = targets.min_threshold_frauds
    if not minimum <= y_tr[band_tr].sum() < band_tr.sum():
        info.update(rows="all", fallback=f"{info['train_frauds']} band frauds in training, fewer than {minimum}")
        return every_tr, every_va, info
    if not minimum <= y_va[band_va].sum() < band_va.sum():
        info["calibrated_on"] = "all validation rows"
        return band_tr, every_va, info
    return band_tr, band_va, info


def _band_figures(rows: np.ndarray, y: np.ndarray, light: np.ndarray, heavy: np.ndarray) -> dict[str, Any]:
    """Rows, frauds, and the light and heavy models' AP on the ``rows`` of validation."""
    return {"rows": int(rows.sum()), "frauds": int(y[rows].sum()), "light_ap": _safe_ap(y[rows], light[rows]),
            "heavy_ap": _safe_ap(y[rows], heavy[rows])}


def _anomaly_choice(settings: TrainSettings, light_va: np.ndarray, y_va: np.ndarray) -> dict[str, Any]:
    """How the anomaly detector is chosen: on what it adds to this light model, or on plain validation AP."""
    if settings.anomaly_choice == "ap":
        return {}
    if settings.anomaly_choice != "added":
        raise ValueError(f"anomaly_choice: expected 'added' or 'ap', got {settings.anomaly_choice!r}")
    return {"criterion": added_value_criterion(light_va, y_va, settings.anomaly_legit_flag_rate),
            "ranking": ranking_key}


def fit_cascade(train: pd.DataFrame, valid: pd.DataFrame, settings: TrainSettings | None = None,
                progress: Progress = SILENT) -> Cascade:
    """Fit every stage on ``train`` and calibrate on ``valid``.

    Both frames hold handbook columns (at least ``TX_DATETIME``, ``CUSTOMER_ID``, ``TX_FRAUD``) and the feature
    columns of ``settings.feature_config``; training rows should be in time order (stacking folds are by
    position).  Returns a cascade whose ``metrics`` hold the validation figures and the choices made.
    ``progress`` hears of each fitting phase.
    """
    settings = settings or TrainSettings()
    names = settings.feature_config.feature_names()
    X_tr, y_tr = _matrix(train, names, "training")
    X_va, y_va = _matrix(valid, names, "validation")
    ts_va = datetime_to_epoch_seconds(valid[TX_DATETIME])
    cust_va = valid[CUSTOMER_ID].to_numpy(dtype=np.int64)
    # the light model is fitted on the leading (screening) features and scores any matrix by them
    screening = len(settings.feature_config.screening_feature_names())
    screening_tr = X_tr[:, :screening]
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    # 1. imbalance treatment, by the light model's validation AP
    choices = IMBALANCE_CHOICES if settings.imbalance == AUTO else (settings.imbalance,)
    imbalance_table: dict[str, float] = {}
    fitted: dict[str, LightModel] = {}
    for choice in choices:
        progress.phase(f"light model ({choice}) on {len(y_tr):,} rows")
        fitted[choice] = _light(settings, choice).fit(screening_tr, y_tr, names[:screening])
        imbalance_table[choice] = _safe_ap(y_va, fitted[choice].raw_score(X_va))
    imbalance = max(choices, key=lambda c: imbalance_table[c] if np.isfinite(imbalance_table[c]) else -1.0)
    light = fitted[imbalance]
    timings["light_fit_s"] = time.perf_counter() - t0

    # 2. probability calibration of the light model
    raw_va = light.raw_score(X_va)
    calibration_table: dict[str, float] = {}
    if settings.calibration == AUTO:
        calibration, calibration_table = _choose_calibration(raw_va, y_va, ts_va)
    else:
        calibration = settings.calibration
    light.calibration = calibration
    light.calibrate(X_va, y_va)
    light_va = light.score(X_va)

    # 3. anomaly detector, fitted on legitimate training rows
    t1 = time.perf_counter()
    progress.phase(f"anomaly detector: {', '.join(settings.anomaly_methods)}")
    anomaly, anomaly_table = select_anomaly_model(
        X_tr, y_tr, X_va, y_va, tuple(settings.anomaly_methods), settings.anomaly_max_rows, settings.seed,
        settings.n_jobs, columns=anomaly_columns(settings.feature_config.feature_names()),
        sides=anomaly_sides(settings.feature_config.feature_names()),
        max_call_ms=settings.anomaly_max_call_ms, **_anomaly_choice(settings, light_va, y_va),
    )
    anomaly_va = anomaly.score(X_va)
    anomaly_tr = anomaly.score(X_tr)
    timings["anomaly_s"] = time.perf_counter() - t1

    # 4. heavy model on features + out-of-fold light score + anomaly score
    t2 = time.perf_counter()
    progress.phase(f"heavy model: {settings.stacking_folds} stacking folds, then {settings.heavy_trees} trees")
    oof_raw = _out_of_fold_light(screening_tr, y_tr, light, settings.stacking_folds)
    if light.calibrator_ is None:
        raise RuntimeError("the light model has no calibrator after fitting")
    light_tr = np.clip(light.calibrator_.transform(oof_raw), 0.0, 1.0)
    def new_heavy() -> HeavyModel:
        return HeavyModel(
            n_estimators=settings.heavy_trees, max_depth=settings.heavy_depth,
            imbalance=imbalance if settings.heavy_imbalance == "same" else settings.heavy_imbalance,
            negatives_per_positive=settings.negatives_per_positive, calibration=calibration, seed=settings.seed,
            n_jobs=settings.n_jobs,
        )

    heavy = new_heavy()
    targets = settings.targets()
    band_tr, band_va, heavy_training = _heavy_band(settings, targets, light_tr, anomaly_tr, y_tr, light_va,
                                                   anomaly_va, y_va)
    heavy_Z_tr = heavy_inputs(X_tr[band_tr], light_tr[band_tr], anomaly_tr[band_tr])
    heavy.fit(heavy_Z_tr, y_tr[band_tr], heavy_feature_names(names))
    heavy_X_va = heavy_inputs(X_va, light_va, anomaly_va)
    heavy_calibration_table: dict[str, float] = {}
    if settings.heavy_calibration == AUTO:
        heavy.calibration, heavy_calibration_table = _choose_calibration(
            heavy.raw_score(heavy_X_va[band_va]), y_va[band_va], ts_va[band_va])
    elif settings.heavy_calibration != "same":
        heavy.calibration = settings.heavy_calibration
    heavy.calibrate(heavy_X_va[band_va], y_va[band_va])
    heavy_va = heavy.score(heavy_X_va)
    timings["heavy_fit_s"] = time.perf_counter() - t2

    # 5. thresholds
    progress.phase("thresholds")
    fallbacks: list[str] = []
    thresholds = choose_thresholds(light_va, anomaly_va, heavy_va, y_va, cust_va, ts_va, targets,
                                   fallbacks=fallbacks)
    if settings.heavy_rows == "routed":
        # second pass: refit on exactly the rows these thresholds route to the heavy model, keep that routing
        policy = CascadePolicy(thresholds)
        r_tr = policy.first_pass({"light": light_tr, "anomaly": anomaly_tr}).to_heavy
        r_va = policy.first_pass({"light": light_va, "anomaly": anomaly_va}).to_heavy
        minimum = targets.min_threshold_frauds
        if minimum <= y_tr[r_tr].sum() < r_tr.sum() and minimum <= y_va[r_va].sum() < r_va.sum():
            progress.phase(f"heavy model again on the {int(r_tr.sum()):,} routed training rows")
            chosen_calibration = heavy.calibration
            heavy = new_heavy()
            heavy.calibration = chosen_calibration
            heavy.fit(heavy_inputs(X_tr[r_tr], light_tr[r_tr], anomaly_tr[r_tr]), y_tr[r_tr],
                      heavy_feature_names(names))
            heavy.calibrate(heavy_X_va[r_va], y_va[r_va])
            heavy_va = heavy.score(heavy_X_va)
            fallbacks = []
            thresholds = choose_thresholds(light_va, anomaly_va, heavy_va, y_va, cust_va, ts_va, targets,
                                           t_allow_light=thresholds.t_allow_light, fallbacks=fallbacks,
                                           t_block_light=thresholds.t_block_light)
            heavy_training.update(rows="routed", train_rows=int(r_tr.sum()), train_frauds=int(y_tr[r_tr].sum()),
                                  valid_rows=int(r_va.sum()), valid_frauds=int(y_va[r_va].sum()))
    for line in fallbacks:
        warnings.warn(f"validation data too small: {line}", ThresholdFallbackWarning, stacklevel=2)
    ambiguous = route_light(light_va, anomaly_va, thresholds).to_heavy
    first_block = block_threshold(light_va, y_va, targets.block_precision, targets.min_block_rows,
                                  targets.block_confidence)
    decision_va, stage_va = CascadePolicy(thresholds).decide({"light": light_va, "anomaly": anomaly_va,
                                                              "heavy": heavy_va})
    stages_va = stage_table(decision_va, stage_va, ambiguous, y_va)
    report = policy_report(light_va, anomaly_va, heavy_va, y_va, cust_va, ts_va, thresholds)

    rules_config = RuleConfig.from_json_file(settings.rules_path or DEFAULT_RULES_PATH)
    timings["total_s"] = time.perf_counter() - t0
    metrics = {
        "rows": {"train": int(y_tr.size), "train_frauds": int(y_tr.sum()), "valid": int(y_va.size),
                 "valid_frauds": int(y_va.sum())},
        "imbalance": imbalance,
        "heavy_imbalance": heavy.imbalance,
        "heavy_training": heavy_training,
        "threshold_fallbacks": fallbacks,
        "imbalance_valid_ap": imbalance_table,
        "calibration": calibration,
        "calibration_valid_brier": calibration_table,
        "heavy_calibration": heavy.calibration,
        "heavy_calibration_valid_brier": heavy_calibration_table,
        "anomaly_method": anomaly.method,
        "anomaly_valid": anomaly_table,
        "valid": {
            "light_ap": _safe_ap(y_va, light_va), "light_auc": _safe_auc(y_va, light_va),
            "light_brier": float(brier_score_loss(y_va, light_va)),
            "heavy_ap": _safe_ap(y_va, heavy_va), "heavy_auc": _safe_auc(y_va, heavy_va),
            "anomaly_ap": _safe_ap(y_va, anomaly_va), "anomaly_auc": _safe_auc(y_va, anomaly_va),
        },
        "ambiguous_valid": _band_figures(ambiguous, y_va, light_va, heavy_va),
        # the part of it below the light model's first BLOCK threshold (before any split): what neither BLOCK
        # region of an unsplit cascade would take
        "ambiguous_unsplit_valid": _band_figures(ambiguous & (light_va < first_block), y_va, light_va, heavy_va),
        "policy_valid": report,
        # the strongest region the heavy stage could have blocked, and whether it met the target (the gap, else)
        "heavy_block_region_valid": {**strongest_block_region(heavy_va[ambiguous], y_va[ambiguous],
                                                              targets.block_confidence),
                                     "kept": bool(thresholds.t_block_heavy < NEVER)},
        "stage_table_valid": stage_table_to_metrics(stages_va),
        "targets": targets.to_dict(),
        "timings_s": timings,
        # what the live traffic is compared with (PSI): the validation period, scored by the final models
        "drift_reference": reference_histograms(watched_signals(light_va, anomaly_va, X_va, names)),
    }
    return Cascade(
        rules=RuleSet(rules_config, names), stages=[LightStage(light), AnomalyStage(anomaly), HeavyStage(heavy)],
        policy=CascadePolicy(thresholds), version=make_version(), feature_names=names,
        feature_config=settings.feature_config, metrics=metrics,
    )


def with_features(frame: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """``frame`` with the feature columns of ``config`` added (batch path), same index."""
    from fraudstream.detectors.features.batch import compute_features

    features = compute_features(frame, config)
    return pd.concat([frame.drop(columns=[c for c in features.columns if c in frame.columns]), features], axis=1)


def train_from_frame(
    frame: pd.DataFrame,
    settings: TrainSettings | None = None,
    start: Any = None,
    end: Any = None,
    progress: Progress = SILENT,
) -> TrainResult:
    """Features, time split ``[start, end)`` (train | gap | valid), fit and calibrate.

    Rows before ``start`` serve only as feature history; rows at or after ``end`` are ignored.  ``start`` and
    ``end`` default to the first day and the day after the last transaction.
    """
    settings = settings or TrainSettings()
    if TX_FRAUD not in frame.columns:
        raise TrainingDataError(f"training needs labels: column {TX_FRAUD} is missing")
    times = frame[TX_DATETIME]
    end_ts = (times.max().normalize() + pd.Timedelta(days=1)) if end is None else pd.Timestamp(end)
    start_ts = times.min().normalize() if start is None else pd.Timestamp(start)
    t0 = time.perf_counter()
    history = frame[times < end_ts]
    progress.phase(f"features on {len(history):,} rows")
    featured = with_features(history, settings.feature_config)
    features_s = time.perf_counter() - t0
    split = make_split(start_ts, end_ts, settings.valid_days, settings.effective_gap_days(), settings.train_days)
    train, valid = split_frame(featured, split)
    cascade = fit_cascade(train, valid, settings, progress)
    cascade.metrics["timings_s"]["features_s"] = features_s
    cascade.metrics["split"] = split.describe()
    extras = {
        "training_data": {
            "train_start": str(split.train_start), "train_end": str(split.train_end),
            "valid_start": str(split.valid_start), "valid_end": str(split.valid_end),
            "gap_days": split.gap_days,
            "first_transaction": str(train[TX_DATETIME].min()), "last_transaction": str(valid[TX_DATETIME].max()),
            "rows_train": int(len(train)), "rows_valid": int(len(valid)),
            "frauds_train": int(train[TX_FRAUD].sum()), "frauds_valid": int(valid[TX_FRAUD].sum()),
            "rows_history": int(len(history)),
        },
        "imbalance": cascade.metrics["imbalance"],
        "calibration": cascade.metrics["calibration"],
        "train_settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.model_dump().items()},
    }
    return TrainResult(cascade=cascade, metrics=cascade.metrics, split=split, manifest_extras=extras)
