"""The handbook's evaluation protocol: prequential folds of train / delay / test weeks, fitted and scored.

Each fold has four consecutive periods (days, half-open ``[start, end)``)::

    validation (7 d) | training (7 d) | delay (7 d) | test (7 d)

The models are fit on the training week (``training="week"``, the handbook's set-up) or on all the history whose
labels are known when the test week starts (``training="all-history"``: every day before the delay week, split
into training, gap and validation as ``fraudstream train`` splits it).  The test set follows ``protocol``: the
handbook's (``handbook``, the default: cards known to be compromised by a test day are left out of it, see
:func:`fraudstream.training.splits.known_compromised_test_rows`) or every transaction (``all-cards``).
Labels of a transaction are known ``delay`` days after it, so the training labels are all known when the test
week starts, and the delay week is never used.  The cascade's thresholds are calibrated on the validation week,
the week before the training week (with ``week``), whose labels are known even earlier.  Fold ``i`` is fold 0
shifted back by ``i`` weeks.  Features are computed once on the whole file in event time (labels only count once
known), so every fold sees what the live stream would have seen.

When the data holds the novel attack (scenario 4), one more split trains before its first transaction and tests
from that day on, with and without the anomaly detector.  The result records, their JSON form and the text
table live in :mod:`fraudstream.training.report`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from fraudstream.detectors.cascade.calibration import CalibrationTargets
from fraudstream.detectors.cascade.types import CascadeResult, Decision
from fraudstream.detectors.env_settings import EnvSettings
from fraudstream.detectors.features.definition import DEFAULT_CONFIG
from fraudstream.detectors.models.heavy import heavy_inputs
from fraudstream.detectors.schema import (
    CUSTOMER_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
    TX_FRAUD_SCENARIO,
    TransactionBatch,
)
from fraudstream.training.metrics import (
    DEFAULT_TOP_K,
    average_precision,
    card_precision_at_k,
    cascade_figures,
    caught_share,
    distinct_cards_per_day,
    roc_auc,
)
from fraudstream.training.progress import SILENT, Progress, as_progress
from fraudstream.training.report import MODELS, NOVEL_SCENARIO, EvaluationReport, FoldResult, NovelAttackResult
from fraudstream.training.splits import (
    PROTOCOL_HANDBOOK,
    PROTOCOLS,
    SplitError,
    known_compromised_test_rows,
    make_split,
    split_frame,
)
from fraudstream.training.stage_table import result_stage_table

if TYPE_CHECKING:
    from fraudstream.detectors.cascade.cascade import Cascade
    from fraudstream.training.train import TrainSettings

ENV_PREFIX = "FRAUDSTREAM_EVAL_"
DAY = pd.Timedelta(days=1)
#: What the models of a fold are trained on (see the module docstring).
TRAINING_WEEK = "week"
TRAINING_ALL_HISTORY = "all-history"
TRAININGS = (TRAINING_WEEK, TRAINING_ALL_HISTORY)


class ProtocolError(ValueError):
    """The data cannot be evaluated as asked (periods outside the data, missing labels, bad settings)."""


class EvaluationSettings(EnvSettings):
    """Settings of ``fraudstream evaluate``; every field is read from ``FRAUDSTREAM_EVAL_<NAME>`` (see ``from_env``).

    Parameters
    ----------
    folds : number of prequential folds.
    anchor : first day (ISO date) of the training week of fold 0, the most recent fold; empty = put fold 0's
        test week at the end of the data (its last full day).  ``2018-08-15`` gives the handbook's test folds.
    train_days, delay_days, test_days : period lengths (days); ``delay_days`` is also the validation length.
    fold_step_days : shift between consecutive folds (days).
    top_k : cards checked per day in card precision@k.
    review_capacity : cards the analysts review per day (cards/day), passed to the threshold calibration.
    seed : random seed of model training.
    protocol : ``handbook`` (known-compromised cards removed day by day) or ``all-cards``.
    training : ``week`` (the fold's training week, calibrated on the week before) or ``all-history`` (every day
        before the delay week, split like ``fraudstream train``).
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)
    settings_error: ClassVar[type[ValueError]] = ProtocolError

    folds: int = Field(4, ge=1, description="number of prequential folds")
    anchor: str = Field("", description="first day (ISO date) of fold 0's training week; empty = end of the data")
    train_days: int = Field(7, ge=1, description="training period (days)")
    delay_days: int = Field(DEFAULT_CONFIG.label_delay_days, ge=1,
                            description="label delay between training and test (days); also the validation length")
    test_days: int = Field(7, ge=1, description="test period (days)")
    fold_step_days: int = Field(7, ge=1, description="shift between consecutive folds (days)")
    top_k: int = Field(DEFAULT_TOP_K, ge=1, description="cards checked per day in card precision@k")
    review_capacity: int = Field(int(CalibrationTargets.review_capacity), ge=1,
                                 description="cards the analysts review per day (cards/day)")
    seed: int = Field(0, description="random seed of model training")
    protocol: str = Field(PROTOCOL_HANDBOOK, description="test set: handbook (known-compromised cards left out "
                          "day by day) or all-cards")
    training: str = Field(TRAINING_WEEK, description="what each fold fits on: week or all-history")

    @field_validator("protocol")
    @classmethod
    def _known_protocol(cls, value: str) -> str:
        if value not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {value!r}")
        return value

    @field_validator("training")
    @classmethod
    def _known_training(cls, value: str) -> str:
        if value not in TRAININGS:
            raise ValueError(f"training must be one of {', '.join(TRAININGS)}, got {value!r}")
        return value

    @field_validator("anchor")
    @classmethod
    def _anchor_is_a_day(cls, value: str) -> str:
        if value:
            _parse_day(value, "anchor")
        return value


def _parse_day(text: str, what: str) -> pd.Timestamp:
    try:
        day = pd.Timestamp(text)
    except ValueError:
        raise ProtocolError(f"{what}: not a date: {text!r}") from None
    if day != day.normalize():
        raise ProtocolError(f"{what}: expected a date without time, got {text!r}")
    return day


@dataclass(frozen=True)
class Fold:
    """One split; every period is half-open ``[start, end)`` on ``TX_DATETIME``, in whole days."""

    index: int
    valid_start: pd.Timestamp
    train_start: pd.Timestamp
    delay_start: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp

    @property
    def valid(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        return self.valid_start, self.train_start

    @property
    def train(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        return self.train_start, self.delay_start

    @property
    def test(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        return self.test_start, self.test_end

    def describe(self) -> dict[str, str]:
        last = lambda end: (end - DAY).date().isoformat()  # noqa: E731 - inclusive last day, for people
        return {
            "valid": f"{self.valid_start.date()}..{last(self.train_start)}",
            "train": f"{self.train_start.date()}..{last(self.delay_start)}",
            "delay": f"{self.delay_start.date()}..{last(self.test_start)}",
            "test": f"{self.test_start.date()}..{last(self.test_end)}",
        }


def fold_at(index: int, train_start: pd.Timestamp, settings: EvaluationSettings,
            test_end: pd.Timestamp | None = None) -> Fold:
    """The fold whose training week starts on ``train_start`` (test period cut at ``test_end`` if earlier)."""
    delay_start = train_start + settings.train_days * DAY
    test_start = delay_start + settings.delay_days * DAY
    full_end = test_start + settings.test_days * DAY
    return Fold(
        index=index,
        valid_start=train_start - settings.delay_days * DAY,
        train_start=train_start,
        delay_start=delay_start,
        test_start=test_start,
        test_end=full_end if test_end is None else min(full_end, test_end),
    )


def prequential_folds(first_day: pd.Timestamp, last_day: pd.Timestamp, settings: EvaluationSettings) -> list[Fold]:
    """Folds 0..folds-1, fold 0 the most recent, each shifted back ``fold_step_days`` from the one before.

    ``first_day`` and ``last_day`` are the first and last (full) days of the data.  Raises :class:`ProtocolError` when
    a fold's validation week starts before the data or fold 0's test week ends after it.
    """
    data_end = last_day + DAY
    if settings.anchor:
        anchor = _parse_day(settings.anchor, "anchor")
    else:
        anchor = data_end - (settings.test_days + settings.delay_days + settings.train_days) * DAY
    folds = [fold_at(i, anchor - i * settings.fold_step_days * DAY, settings) for i in range(settings.folds)]
    if folds[0].test_end > data_end:
        raise ProtocolError(
            f"anchor {anchor.date()}: fold 0's test week ends {(folds[0].test_end - DAY).date()}, "
            f"after the last day of the data {last_day.date()}"
        )
    if folds[-1].valid_start < first_day:
        raise ProtocolError(
            f"{settings.folds} folds need data from {folds[-1].valid_start.date()} (validation week of fold "
            f"{folds[-1].index}), but the data starts {first_day.date()}: use fewer folds or a later anchor"
        )
    return folds


def novel_attack_fold(first_seen: pd.Timestamp, first_day: pd.Timestamp, last_day: pd.Timestamp,
                      settings: EvaluationSettings) -> Fold:
    """The split whose test period starts on the day the novel attack is first seen (training ends before it)."""
    test_start = first_seen.normalize()
    train_start = test_start - (settings.delay_days + settings.train_days) * DAY
    fold = fold_at(-1, train_start, settings, test_end=last_day + DAY)
    if fold.valid_start < first_day:
        raise ProtocolError(
            f"novel attack first seen {first_seen}: training before it needs data from {fold.valid_start.date()}, "
            f"but the data starts {first_day.date()}"
        )
    return fold


# ---- scoring ----------------------------------------------------------------------------------------------


def _period(frame: pd.DataFrame, bounds: tuple[pd.Timestamp, pd.Timestamp]) -> pd.DataFrame:
    start, end = bounds
    times = frame[TX_DATETIME]
    return frame.loc[(times >= start) & (times < end)]


def _days(frame: pd.DataFrame) -> np.ndarray:
    """Day number (days since the epoch) of each transaction."""
    return frame[TX_DATETIME].to_numpy(dtype="datetime64[ns]").astype("datetime64[D]").astype(np.int64)


def score_metrics(frame: pd.DataFrame, score: np.ndarray, top_k: int) -> dict[str, float]:
    """AUC ROC, average precision and card precision@k of one score on one labelled period."""
    fraud = frame[TX_FRAUD].to_numpy()
    return {
        "auc_roc": roc_auc(fraud, score),
        "average_precision": average_precision(fraud, score),
        "card_precision_at_k": card_precision_at_k(
            _days(frame), frame[CUSTOMER_ID].to_numpy(), fraud, score, k=top_k
        ).mean,
    }


def _train_settings(settings: EvaluationSettings) -> TrainSettings:
    from fraudstream.training.train import TrainSettings

    return TrainSettings(review_capacity=settings.review_capacity, seed=settings.seed)


def training_periods(data: pd.DataFrame, fold: Fold, settings: EvaluationSettings,
                     train_settings: TrainSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training and validation rows of a fold for ``settings.training`` (see the module docstring)."""
    if settings.training == TRAINING_WEEK:
        return _period(data, fold.train), _period(data, fold.valid)
    try:
        split = make_split(data[TX_DATETIME].min().normalize(), fold.delay_start, train_settings.valid_days,
                           train_settings.effective_gap_days())
    except SplitError as exc:
        raise ProtocolError(f"fold {fold.index}, all-history training: {exc}") from None
    return split_frame(data, split)


def _fit(data: pd.DataFrame, fold: Fold, settings: EvaluationSettings, train_settings: TrainSettings,
         progress: Progress = SILENT) -> Cascade:
    from fraudstream.training.train import fit_cascade

    train, valid = training_periods(data, fold, settings, train_settings)
    progress.phase(f"fold {fold.index}: fitting on {len(train):,} rows ({train[TX_DATETIME].min().date()}.."
                   f"{train[TX_DATETIME].max().date()}), thresholds on {len(valid):,}")
    return fit_cascade(train, valid, train_settings, progress=progress)


def test_set(data: pd.DataFrame, fold: Fold, settings: EvaluationSettings) -> pd.DataFrame:
    """The fold's scored rows: the test week, without the known-compromised cards under the handbook protocol."""
    test = _period(data, fold.test)
    if settings.protocol != PROTOCOL_HANDBOOK:
        return test
    lookback = _period(data, (fold.train_start, fold.test_end))
    keep = known_compromised_test_rows(
        _days(lookback), lookback[CUSTOMER_ID].to_numpy(), lookback[TX_FRAUD].to_numpy(),
        int(fold.train_start.to_datetime64().astype("datetime64[D]").astype(np.int64)),
        settings.train_days, settings.delay_days, (fold.test_end - fold.test_start) // DAY)
    return lookback.loc[keep]


def model_scores(cascade: Cascade, X: np.ndarray) -> dict[str, np.ndarray]:
    """Ranking scores of the light and heavy models on every row of ``X`` (the heavy model on all rows too).

    The uncalibrated probabilities are used: calibration is monotone, and the raw scores keep the ranking
    without the ties an isotonic calibration introduces.
    """
    light_raw = cascade.light.raw_score(X)
    heavy_X = heavy_inputs(X, cascade.light.score(X), cascade.anomaly.score(X))
    return {"light": light_raw, "heavy": cascade.heavy.raw_score(heavy_X)}


def _test_metrics(cascade: Cascade, test: pd.DataFrame,
                  settings: EvaluationSettings) -> tuple[dict[str, dict[str, float]], CascadeResult]:
    X = test[cascade.feature_names].to_numpy(dtype=np.float64)
    result = cascade.score(X, TransactionBatch.from_frame(test))
    scores = model_scores(cascade, X)
    scores["cascade"] = np.asarray(result.risk, dtype=np.float64)
    return {name: score_metrics(test, scores[name], settings.top_k) for name in MODELS}, result


def evaluate_fold(data: pd.DataFrame, fold: Fold, settings: EvaluationSettings, train_settings: TrainSettings,
                  progress: Progress = SILENT) -> FoldResult:
    """Fit on the fold's training data (see ``settings.training``) and score its test set.

    Under the handbook protocol the same models are also scored on every transaction of the test week
    (``metrics_all_cards``), so the two test sets compare on identical fits.
    """
    cascade = _fit(data, fold, settings, train_settings, progress)
    test = test_set(data, fold, settings)
    metrics, result = _test_metrics(cascade, test, settings)
    figures = cascade_figures(result, test[TX_FRAUD].to_numpy(), test[TX_AMOUNT].to_numpy(),
                              test[CUSTOMER_ID].to_numpy(), _days(test))
    out = FoldResult(fold, len(test), int(test[TX_FRAUD].sum()), metrics, figures, _choices(cascade))
    out.stage_table = result_stage_table(result, test[TX_FRAUD].to_numpy())
    if settings.protocol == PROTOCOL_HANDBOOK:
        out.metrics_all_cards = _test_metrics(cascade, _period(data, fold.test), settings)[0]
    return out


def _choices(cascade: Any) -> dict[str, Any]:
    """What training chose on the fold (imbalance, calibration, anomaly method, thresholds), for the JSON."""
    chosen = {k: cascade.metrics.get(k) for k in ("imbalance", "calibration", "anomaly_method")}
    chosen["thresholds"] = cascade.thresholds.to_dict()
    return chosen


def evaluate_novel_attack(data: pd.DataFrame, fold: Fold, first_seen: pd.Timestamp, settings: EvaluationSettings,
                          train_settings: TrainSettings, progress: Progress = SILENT) -> NovelAttackResult:
    """Train before the novel attack, test from its first day, with and without the anomaly detector.

    Every transaction from that day on is scored (the attacked cards are new: none is known yet).
    """
    cascade = _fit(data, fold, settings, train_settings, progress)
    test = _period(data, fold.test)
    X, batch = test[cascade.feature_names].to_numpy(dtype=np.float64), TransactionBatch.from_frame(test)
    novel = test[TX_FRAUD_SCENARIO].to_numpy() == NOVEL_SCENARIO
    days, cards = _days(test), test[CUSTOMER_ID].to_numpy()
    outcome = {}
    for name, model in (("with", cascade), ("without", cascade.without_anomaly())):
        decision = np.asarray(model.score(X, batch).decision)
        reviewed = decision == Decision.REVIEW
        outcome[name] = (caught_share(decision, novel), float(distinct_cards_per_day(days, cards, reviewed).mean()))
    return NovelAttackResult(first_seen, fold, int(novel.sum()), outcome["with"][0], outcome["without"][0],
                             outcome["with"][1], outcome["without"][1])


def _check_columns(frame: pd.DataFrame) -> None:
    missing = [c for c in (TX_DATETIME, CUSTOMER_ID, TX_AMOUNT, TX_FRAUD) if c not in frame.columns]
    if missing:
        raise ProtocolError(f"evaluation needs labelled data; missing columns: {', '.join(missing)}")
    if not pd.api.types.is_datetime64_any_dtype(frame[TX_DATETIME]):
        raise ProtocolError(f"{TX_DATETIME}: expected datetimes, got {frame[TX_DATETIME].dtype}")


def evaluate(frame: pd.DataFrame, settings: EvaluationSettings,
             progress: Progress | Callable[[str], None] | None = None,
             train_settings: TrainSettings | None = None) -> EvaluationReport:
    """Run the whole protocol on one labelled frame in handbook columns.

    Features are computed once on the whole frame (batch path); then every fold is fit and scored, and the
    novel-attack split is run when scenario-4 rows exist.  ``train_settings`` (a ``TrainSettings``) defaults to
    the training defaults with this evaluation's review capacity and seed.
    """
    from fraudstream.detectors.features.batch import compute_features

    progress = as_progress(progress)
    say = progress.phase
    _check_columns(frame)
    first_day = frame[TX_DATETIME].min().normalize()
    last_day = frame[TX_DATETIME].max().normalize()
    folds = prequential_folds(first_day, last_day, settings)
    novel_first_seen = None
    if TX_FRAUD_SCENARIO in frame.columns and (frame[TX_FRAUD_SCENARIO] == NOVEL_SCENARIO).any():
        novel_first_seen = frame.loc[frame[TX_FRAUD_SCENARIO] == NOVEL_SCENARIO, TX_DATETIME].min()
        novel_fold = novel_attack_fold(novel_first_seen, first_day, last_day, settings)

    train_settings = train_settings or _train_settings(settings)
    say(f"computing features on {len(frame):,} transactions ({first_day.date()}..{last_day.date()})")
    features = compute_features(frame, train_settings.feature_config)
    feature_names = list(features.columns)
    data = pd.concat([frame.drop(columns=[c for c in feature_names if c in frame.columns]), features], axis=1)

    results = []
    with progress.steps(len(folds) + (novel_first_seen is not None), "evaluate", unit="fold") as advance:
        for fold in folds:
            say(f"fold {fold.index}: " + ", ".join(f"{k} {v}" for k, v in fold.describe().items()))
            results.append(evaluate_fold(data, fold, settings, train_settings, progress))
            m = results[-1].metrics["cascade"]
            say(f"fold {fold.index}: {results[-1].n_test:,} test rows ({settings.protocol}); cascade AUC "
                f"{m['auc_roc']:.3f} AP {m['average_precision']:.3f} CP@{settings.top_k} "
                f"{m['card_precision_at_k']:.3f}")
            advance(1)
        report = EvaluationReport(settings, results, feature_names=feature_names)
        if novel_first_seen is not None:
            say(f"novel attack first seen {novel_first_seen}: " + ", ".join(
                f"{k} {v}" for k, v in novel_fold.describe().items()))
            report.novel = evaluate_novel_attack(data, novel_fold, novel_first_seen, settings, train_settings,
                                                 progress)
            advance(1)
    return report
