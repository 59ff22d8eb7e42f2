"""What the cascade catches of attacks nobody trained on: per novel family, at the cascade's legit flag rate.

The models are fit before the first transaction of any novel family (scenarios 4 to 7 of the simulator), on the
training week that ends a label delay before it, with thresholds from the week before that
(:func:`fraudstream.training.evaluate.novel_attack_fold`); every transaction from that day on is scored.  For each
family the report gives the share of its transactions flagged (BLOCK or REVIEW) and blocked, the share of its
cards flagged at least once and the time from a card's first attacked transaction to its first flag, for

* the cascade as trained, and the same cascade without its anomaly detector;
* the light model alone and the anomaly detector alone, each flagging the same share of legitimate transactions
  as the cascade does (its legit flag rate), so that every line pays the same false-alarm price.

One family, the held-out family, is left out of every choice made with the novel families (features, detector,
thresholds): it is reported on its own line, as the figure for an attack nobody has seen.  The known frauds'
average precision on the same period (novel rows left out) says what the detection of known patterns costs.

With a review budget (``review_budget`` cases a day, as the worker's ``review_cases_per_day``), both cascades'
REVIEWs past the day's budget become ALLOW, first come first served in event time
(:func:`fraudstream.detectors.cascade.review_budget.apply_review_budget`; no analyst closes a case in this open
loop, so a case is a card REVIEWed that day), and the models alone are held to the legit flag rate that leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fraudstream.detectors.cascade.calibration import MAX_LEGIT_FLAG_RATE
from fraudstream.detectors.cascade.review_budget import apply_review_budget
from fraudstream.detectors.cascade.types import Decision
from fraudstream.detectors.schema import (
    CUSTOMER_ID,
    TRANSACTION_ID,
    TX_DATETIME,
    TX_FRAUD,
    TX_FRAUD_SCENARIO,
    TransactionBatch,
    datetime_to_epoch_seconds,
)
from fraudstream.training.metrics import average_precision, distinct_cards_per_day
from fraudstream.training.progress import Progress, as_progress
from fraudstream.training.simulator import (
    NOVEL_SCENARIOS,
    SCENARIO_CARD_TESTING,
    SCENARIO_DISTANT_CASHOUT,
    SCENARIO_MERCHANT_BREACH,
    SCENARIO_SLOW_DRAIN,
)
from fraudstream.training.stage_table import StageTable, format_stage_table, result_stage_table

if TYPE_CHECKING:
    from fraudstream.training.evaluate import EvaluationSettings, Fold
    from fraudstream.training.train import TrainSettings

FAMILY_NAMES = {
    SCENARIO_CARD_TESTING: "card testing",
    SCENARIO_DISTANT_CASHOUT: "distant cash-out",
    SCENARIO_MERCHANT_BREACH: "merchant breach",
    SCENARIO_SLOW_DRAIN: "slow drain",
}
#: The family no choice looks at (no feature was designed for it: the events carry no place).
DEFAULT_HELD_OUT = SCENARIO_DISTANT_CASHOUT
#: The lines of the report, in order: the cascade, without its detector, and each model alone.
DETECTORS = ("cascade", "cascade without anomaly", "light model alone", "anomaly detector alone")
#: The floors the detection aims at (per family, and the legit transactions flagged).
FLOOR_TX_FLAGGED = 0.80
FLOOR_CARDS_FLAGGED = 0.90
SECONDS_PER_HOUR = 3_600.0


class NovelAttackError(ValueError):
    """The data holds no novel attack, or not enough history before it."""


@dataclass(frozen=True)
class FamilyFigures:
    """What one detector catches of one family (shares in [0, 1]; hours from the card's first attacked tx)."""

    transactions: int
    cards: int
    tx_flagged: float
    tx_blocked: float
    cards_flagged: float
    hours_to_first_flag_median: float
    hours_to_first_flag_mean: float


@dataclass
class NovelReport:
    """Per family and detector figures, the operating point and the known-fraud figures of one split."""

    fold: dict[str, str]
    first_seen: str
    held_out: int
    n_test: int
    legit_flag_rate: dict[str, float]
    review_cards_per_day: dict[str, float]
    review_capacity: int
    known_fraud_ap: dict[str, float]
    known_fraud_flagged: dict[str, float] = field(default_factory=dict)  # share of known frauds BLOCKed or REVIEWed
    anomaly_method: str = ""
    families: dict[int, dict[str, FamilyFigures]] = field(default_factory=dict)
    review_budget: int = 0  # review cases a day (0: none)
    reviews_over_budget_per_day: dict[str, float] = field(default_factory=dict)  # REVIEWs made ALLOW, a day
    stage_table: StageTable | None = None  # the cascade's stages on the scored period, every fraud counted

    def floors(self) -> dict[int, bool]:
        """Per family: the cascade flags >= 80% of its transactions and >= 90% of its cards."""
        return {s: f["cascade"].tx_flagged >= FLOOR_TX_FLAGGED and f["cascade"].cards_flagged >= FLOOR_CARDS_FLAGGED
                for s, f in self.families.items()}

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("families", "stage_table")}
        out["stage_table"] = None if self.stage_table is None else self.stage_table.to_json()
        out["families"] = {str(s): {"name": FAMILY_NAMES[s], "held_out": s == self.held_out,
                                    **{d: _jsonable(asdict(x)) for d, x in f.items()}}
                           for s, f in self.families.items()}
        out["floors_met"] = {str(s): ok for s, ok in self.floors().items()}
        return _jsonable(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def family_figures(flagged: np.ndarray, blocked: np.ndarray, attacked: np.ndarray, card: np.ndarray,
                   time_s: np.ndarray) -> FamilyFigures:
    """Figures of one family's rows (``attacked``) for one detector's flags (boolean arrays, row-aligned)."""
    rows = np.flatnonzero(attacked)
    if not rows.size:
        nan = float("nan")
        return FamilyFigures(0, 0, nan, nan, nan, nan, nan)
    frame = pd.DataFrame({"card": card[rows], "t": time_s[rows], "flag": flagged[rows]})
    first_attack = frame.groupby("card")["t"].min()
    first_flag = frame.loc[frame["flag"], ["card", "t"]].groupby("card")["t"].min()
    delay_h = (first_flag - first_attack.loc[first_flag.index]) / SECONDS_PER_HOUR
    nan = float("nan")
    return FamilyFigures(
        transactions=int(rows.size), cards=int(first_attack.size), tx_flagged=float(flagged[rows].mean()),
        tx_blocked=float(blocked[rows].mean()), cards_flagged=float(first_flag.size / first_attack.size),
        hours_to_first_flag_median=float(delay_h.median()) if delay_h.size else nan,
        hours_to_first_flag_mean=float(delay_h.mean()) if delay_h.size else nan)


def flags_at_rate(score: np.ndarray, legit: np.ndarray, rate: float) -> np.ndarray:
    """Flag the rows whose score is above the legit rows' ``1 - rate`` quantile: about ``rate`` of the legit
    rows get flagged (fewer on ties, never more)."""
    if rate <= 0 or not legit.any():
        return np.zeros(score.shape[0], dtype=bool)
    legit_scores = np.sort(score[legit])
    allowed = int(np.floor(rate * legit_scores.size))  # legit rows that may be flagged
    if allowed == 0:
        return score > legit_scores[-1]
    threshold = legit_scores[legit_scores.size - allowed - 1]  # strictly above it: at most `allowed` legit rows
    return score > threshold


def _days(frame: pd.DataFrame) -> np.ndarray:
    return frame[TX_DATETIME].to_numpy(dtype="datetime64[ns]").astype("datetime64[D]").astype(np.int64)


def evaluate_novel(frame: pd.DataFrame, settings: EvaluationSettings, train_settings: TrainSettings | None = None,
                   held_out: int = DEFAULT_HELD_OUT,
                   progress: Progress | Callable[[str], None] | None = None, review_budget: int = 0) -> NovelReport:
    """Fit before the first novel transaction and report every family (see the module docstring); with
    ``review_budget`` > 0 the cascades' REVIEWs are held to that many cases a day.

    ``frame`` has the handbook columns with ``TX_FRAUD`` and ``TX_FRAUD_SCENARIO``.  Raises
    :class:`NovelAttackError` when no novel family is in the data or the history before it is too short.
    """
    from fraudstream.training.evaluate import ProtocolError, novel_attack_fold
    from fraudstream.training.train import with_features

    progress = as_progress(progress)
    if held_out not in NOVEL_SCENARIOS:
        raise NovelAttackError(f"held-out family: expected one of {NOVEL_SCENARIOS}, got {held_out}")
    if review_budget < 0:
        raise NovelAttackError(f"review budget: expected >= 0 cases a day, got {review_budget}")
    if TX_FRAUD_SCENARIO not in frame.columns or TX_FRAUD not in frame.columns:
        raise NovelAttackError(f"needs the columns {TX_FRAUD} and {TX_FRAUD_SCENARIO}")
    scenario = frame[TX_FRAUD_SCENARIO].to_numpy()
    novel = np.isin(scenario, NOVEL_SCENARIOS)
    if not novel.any():
        raise NovelAttackError("no novel attack in the data (simulate with --novel-start DATE)")
    first_seen = frame.loc[novel, TX_DATETIME].min()
    train_settings = train_settings or _train_settings(settings)
    try:
        fold = novel_attack_fold(first_seen, frame[TX_DATETIME].min().normalize(),
                                 frame[TX_DATETIME].max().normalize(), settings)
    except ProtocolError as exc:
        raise NovelAttackError(str(exc)) from None
    progress.phase(f"novel attacks first seen {first_seen}: " + ", ".join(f"{k} {v}"
                                                                        for k, v in fold.describe().items()))
    progress.phase(f"computing features on {len(frame):,} transactions")
    data = with_features(frame, train_settings.feature_config)
    return _novel_report(data, fold, first_seen, settings, train_settings, held_out, progress, review_budget)


def _train_settings(settings: EvaluationSettings) -> TrainSettings:
    from fraudstream.training.train import TrainSettings

    return TrainSettings(review_capacity=settings.review_capacity, seed=settings.seed)


def _novel_report(data: pd.DataFrame, fold: Fold, first_seen: pd.Timestamp, settings: EvaluationSettings,
                  train_settings: TrainSettings, held_out: int, progress: Progress, review_budget: int = 0
                  ) -> NovelReport:
    from fraudstream.training.evaluate import _fit, _period

    cascade = _fit(data, fold, settings, train_settings, progress)
    test = _period(data, fold.test).sort_values([TX_DATETIME, TRANSACTION_ID], kind="stable")
    progress.phase(f"scoring {len(test):,} transactions from {fold.test_start.date()}")
    X, batch = test[cascade.feature_names].to_numpy(dtype=np.float64), TransactionBatch.from_frame(test)
    scenario = test[TX_FRAUD_SCENARIO].to_numpy()
    legit = test[TX_FRAUD].to_numpy() == 0
    card, days = test[CUSTOMER_ID].to_numpy(), _days(test)
    time_s = batch.timestamp
    known = ~np.isin(scenario, NOVEL_SCENARIOS)
    known_fraud = known & ~legit

    flags: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    review_cards: dict[str, float] = {}
    over_budget: dict[str, float] = {}
    stages: StageTable | None = None
    risk: dict[str, np.ndarray] = {}
    n_days = max(len(np.unique(days)), 1)
    for name, model in (("cascade", cascade), ("cascade without anomaly", cascade.without_anomaly())):
        result = model.score(X, batch)
        if review_budget > 0:  # rows in event-time order: first come first served
            budgeted = apply_review_budget(result, time_s, card, {}, review_budget, lookback_days=0)
            result, over_budget[name] = budgeted.result, budgeted.allowed / n_days
        decision = np.asarray(result.decision)
        flags[name] = ((decision == Decision.BLOCK) | (decision == Decision.REVIEW), decision == Decision.BLOCK)
        review_cards[name] = float(distinct_cards_per_day(days, card, decision == Decision.REVIEW).mean())
        risk[name] = np.asarray(result.risk, dtype=np.float64)
        if name == "cascade":
            stages = result_stage_table(result, ~legit)
    rate = float(flags["cascade"][0][legit].mean()) if legit.any() else 0.0
    light = cascade.light.raw_score(X)
    anomaly = cascade.anomaly.score(X)
    for name, score in (("light model alone", light), ("anomaly detector alone", anomaly)):
        flagged = flags_at_rate(score, legit, rate)
        flags[name] = (flagged, np.zeros_like(flagged))  # a model alone only flags: blocking is the cascade's
    report = NovelReport(
        fold=fold.describe(), first_seen=str(first_seen), held_out=held_out, n_test=len(test),
        legit_flag_rate={name: float(f[legit].mean()) if legit.any() else float("nan")
                         for name, (f, _) in flags.items()},
        review_cards_per_day=review_cards, review_capacity=int(train_settings.review_capacity),
        known_fraud_ap={"cascade": average_precision(test[TX_FRAUD].to_numpy()[known], risk["cascade"][known]),
                        "light model": average_precision(test[TX_FRAUD].to_numpy()[known], light[known])},
        known_fraud_flagged={name: float(flags[name][0][known_fraud].mean()) if known_fraud.any() else float("nan")
                             for name in DETECTORS[:2]},
        anomaly_method=str(cascade.metrics.get("anomaly_method", "")), review_budget=review_budget,
        reviews_over_budget_per_day=over_budget, stage_table=stages)
    for family in NOVEL_SCENARIOS:
        attacked = scenario == family
        if attacked.any():
            report.families[family] = {name: family_figures(f, b, attacked, card, time_s)
                                       for name, (f, b) in flags.items()}
    return report


def _pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{100 * x:.1f}%"


def _hours(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.1f} h"


def family_table(families: dict[int, dict[str, FamilyFigures]], detectors: tuple[str, ...], held_out: int,
                 blocking: tuple[str, ...]) -> list[str]:
    """Markdown lines: per family one row per detector (``blocking``: the detectors whose blocks are shown)."""
    header = ["family (tx, cards)", "detector", "tx flagged", "tx blocked", "cards flagged", "to first flag (median)"]
    rows = [header, ["---"] * len(header)]
    for family, figures in families.items():
        first = figures[detectors[0]]
        name = (f"{family} {FAMILY_NAMES[family]}{' (held out)' if family == held_out else ''} "
                f"({first.transactions:,}, {first.cards:,})")
        for detector in detectors:
            f = figures[detector]
            rows.append([name if detector == detectors[0] else "", detector, _pct(f.tx_flagged),
                         _pct(f.tx_blocked) if detector in blocking else "-", _pct(f.cards_flagged),
                         _hours(f.hours_to_first_flag_median)])
    widths = [max(len(row[k]) for row in rows) for k in range(len(header))]
    return ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |" for row in rows]


def format_novel_report(report: NovelReport) -> str:
    """The report as text: per family one line per detector, then the operating point and the floors."""
    d = report.fold
    lines = [f"Novel attacks: trained on {d['train']} (thresholds on {d['valid']}), before the first novel "
             f"transaction ({report.first_seen}); scored {d['test']} ({report.n_test:,} transactions).", ""]
    lines += family_table(report.families, DETECTORS, report.held_out, DETECTORS[:2])
    lines.append("")
    lines.append("legit transactions flagged: " + ", ".join(f"{k} {_pct(v)}" for k, v in
                                                            report.legit_flag_rate.items()))
    lines.append("review cards a day: " + ", ".join(f"{k} {v:.1f}" for k, v in report.review_cards_per_day.items())
                 + f" (capacity {report.review_capacity})")
    if report.review_budget > 0:
        lines.append(f"review budget {report.review_budget} cases a day; REVIEWs allowed over it a day: " + ", ".join(
            f"{k} {v:.1f}" for k, v in report.reviews_over_budget_per_day.items()))
    lines.append(f"anomaly detector: {report.anomaly_method or 'n/a'}")
    lines.append("known-fraud average precision on the same period (novel rows left out): " + ", ".join(
        f"{k} {v:.3f}" for k, v in report.known_fraud_ap.items()))
    if report.known_fraud_flagged:
        lines.append("known frauds flagged (BLOCK or REVIEW) on the same period: " + ", ".join(
            f"{k} {_pct(v)}" for k, v in report.known_fraud_flagged.items()))
    floors = report.floors()
    legit_ok = report.legit_flag_rate["cascade"] <= MAX_LEGIT_FLAG_RATE
    lines.append(f"floors (cascade: >= {FLOOR_TX_FLAGGED:.0%} of the tx and >= {FLOOR_CARDS_FLAGGED:.0%} of the "
                 f"cards flagged, <= {MAX_LEGIT_FLAG_RATE:.0%} legit flagged): legit "
                 f"{'met' if legit_ok else 'NOT met'}; " + ", ".join(
                     f"{FAMILY_NAMES[s]} {'met' if ok else 'NOT met'}" for s, ok in floors.items()))
    lines.append(beats_line(report.families, "cascade"))
    if report.stage_table is not None:
        lines += ["", format_stage_table(report.stage_table, "per-stage table, cascade, the scored period (known "
                                                             "and novel frauds)")]
    return "\n".join(lines)


#: The models alone a system's flags are held against (the same legit flag rate).
ALONE = DETECTORS[2:]


def beats_line(families: dict[int, dict[str, FamilyFigures]], system: str) -> str:
    """Per model alone, the families on which ``system`` flags a larger share of the transactions than it (the
    floor "beats both on every family"), and those on which it does not."""
    parts = []
    for alone in ALONE:
        wins = [FAMILY_NAMES[s] for s, f in families.items() if f[system].tx_flagged > f[alone].tx_flagged]
        losses = [FAMILY_NAMES[s] for s, f in families.items() if f[system].tx_flagged <= f[alone].tx_flagged]
        parts.append(f"{alone}: beaten on {', '.join(wins) or 'none'}"
                     + (f"; NOT beaten on {', '.join(losses)}" if losses else " (every family)"))
    return f"{system} against each model alone (share of tx flagged, same legit rate): " + "; ".join(parts)


#: The lines of a backtest's family table: the run as it decided (rules, block list and analysts included), then
#: each model alone flagging the share of legitimate transactions the run flagged.
BACKTEST_DETECTORS = ("backtest", *ALONE)
#: Per model alone, the column of a backtest's decisions holding its score.
_ALONE_SCORES = dict(zip(ALONE, ("LIGHT_SCORE", "ANOMALY_SCORE")))


@dataclass
class BacktestFamilies:
    """Per novel family what a backtest run flagged, and what each model alone would have at its legit rate."""

    n_rows: int
    legit_flag_rate: float
    families: dict[int, dict[str, FamilyFigures]] = field(default_factory=dict)
    #: per family, the share of its transactions the live block list blocked (cards confirmed earlier)
    by_block_list: dict[int, float] = field(default_factory=dict)

    def floors(self) -> dict[int, bool]:
        """Per family: the run flags >= 80% of its transactions and >= 90% of its cards."""
        return {s: f["backtest"].tx_flagged >= FLOOR_TX_FLAGGED and f["backtest"].cards_flagged >= FLOOR_CARDS_FLAGGED
                for s, f in self.families.items()}

    def to_json(self) -> dict[str, Any]:
        return _jsonable({"n_rows": self.n_rows, "legit_flag_rate": self.legit_flag_rate,
                          "families": {str(s): {"name": FAMILY_NAMES[s], "held_out": s == DEFAULT_HELD_OUT,
                                                "blocked_by_block_list": self.by_block_list.get(s),
                                                **{d: asdict(x) for d, x in f.items()}}
                                       for s, f in self.families.items()},
                          "floors_met": {str(s): ok for s, ok in self.floors().items()}})


def backtest_families(decisions: pd.DataFrame) -> BacktestFamilies | None:
    """The novel families of a backtest's period (``BacktestRun.decisions`` with ``TX_FRAUD_SCENARIO``); None when
    the period holds none (or the data does not say which attack a fraud belongs to).

    "Flagged" is BLOCK or REVIEW as the run decided, so the live block list and the analysts' verdicts count; the
    models alone rank by the light and anomaly scores the run recorded.
    """
    from fraudstream.training.backtest import blocked_by_list

    if TX_FRAUD_SCENARIO not in decisions.columns:
        return None
    scenario = decisions[TX_FRAUD_SCENARIO].to_numpy()
    present = [family for family in NOVEL_SCENARIOS if (scenario == family).any()]
    if not present:
        return None
    decision = decisions["DECISION"].to_numpy()
    blocked = decision == Decision.BLOCK.name
    flagged = blocked | (decision == Decision.REVIEW.name)
    legit = decisions[TX_FRAUD].to_numpy() == 0
    rate = float(flagged[legit].mean()) if legit.any() else 0.0
    flags = {BACKTEST_DETECTORS[0]: (flagged, blocked)}
    for name, column in _ALONE_SCORES.items():
        score = np.nan_to_num(decisions[column].to_numpy(dtype=np.float64), nan=-np.inf)  # nan: the stage did not run
        alone = flags_at_rate(score, legit, rate)
        flags[name] = (alone, np.zeros_like(alone))
    card = decisions[CUSTOMER_ID].to_numpy()
    time_s = datetime_to_epoch_seconds(decisions[TX_DATETIME])
    by_list = blocked_by_list(decisions)
    out = BacktestFamilies(n_rows=len(decisions), legit_flag_rate=rate)
    for family in present:
        attacked = scenario == family
        out.families[family] = {name: family_figures(f, b, attacked, card, time_s) for name, (f, b) in flags.items()}
        out.by_block_list[family] = float(by_list[attacked].mean())
    return out


def format_backtest_families(figures: BacktestFamilies, run_name: str) -> str:
    """The family table of one backtest run, with its legit flag rate and the floors."""
    lines = [f"novel attack families, {run_name} ({figures.n_rows:,} transactions; models alone at the run's "
             f"legit flag rate, {_pct(figures.legit_flag_rate)}):", ""]
    lines += family_table(figures.families, BACKTEST_DETECTORS, DEFAULT_HELD_OUT, BACKTEST_DETECTORS[:1])
    lines.append("of the backtest's blocks, by the live block list (the card confirmed as fraud earlier): " + ", ".join(
        f"{FAMILY_NAMES[s]} {_pct(share)} of the tx" for s, share in figures.by_block_list.items()))
    legit_ok = figures.legit_flag_rate <= MAX_LEGIT_FLAG_RATE
    lines.append(f"floors (>= {FLOOR_TX_FLAGGED:.0%} of the tx and >= {FLOOR_CARDS_FLAGGED:.0%} of the cards flagged, "
                 f"<= {MAX_LEGIT_FLAG_RATE:.0%} legit flagged): legit {'met' if legit_ok else 'NOT met'}; "
                 + ", ".join(f"{FAMILY_NAMES[s]} {'met' if ok else 'NOT met'}" for s, ok in figures.floors().items()))
    lines.append(beats_line(figures.families, BACKTEST_DETECTORS[0]))
    return "\n".join(lines)
