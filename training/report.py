"""Results of an evaluation and how they are shown: per-fold records, the summary, the JSON and the text table.

:func:`fraudstream.training.evaluate.evaluate` fills an :class:`EvaluationReport`; :func:`format_report` prints it
as one aligned plain-text table with footnotes, :meth:`EvaluationReport.to_json` serializes every fold (``nan``
written as ``null``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fraudstream.training.metrics import CascadeFigures
from fraudstream.training.stage_table import StageTable, format_stage_table

if TYPE_CHECKING:  # annotations only: evaluate imports this module
    from fraudstream.training.evaluate import EvaluationSettings, Fold

#: Scenario number of the novel "card testing" attack in ``TX_FRAUD_SCENARIO``.
NOVEL_SCENARIO = 4

#: The handbook's published test-set figures of its XGBoost baseline (quoted, not recomputed).
PUBLISHED_XGBOOST: dict[str, float] = {"auc_roc": 0.869, "average_precision": 0.687, "card_precision_at_k": 0.303}

#: What each protocol's test set holds and what each training set-up fits on (for the report and its JSON).
PROTOCOL_TEXT: dict[str, str] = {
    "handbook": "the handbook's: each test day without the cards known to be compromised by then (a fraud in "
                "the training week, or on a delay day whose labels are known)",
    "all-cards": "every transaction of the test week",
}
TRAINING_TEXT: dict[str, str] = {
    "week": "the fold's training week; thresholds on the week before it",
    "all-history": "all days before the fold's delay week (labels known when the test week starts), split into "
                   "training, gap and validation as `fraudstream train` splits",
}

METRICS: tuple[str, ...] = ("auc_roc", "average_precision", "card_precision_at_k")
MODELS: tuple[str, ...] = ("light", "heavy", "cascade")
MODEL_LABELS: dict[str, str] = {
    "published": "handbook XGBoost (published)",
    "light": "light model (XGBoost)",
    "heavy": "heavy model",
    "cascade": "cascade (risk)",
}


@dataclass
class FoldResult:
    """Metrics of one fold: per model (``light``, ``heavy``, ``cascade``) and the cascade's decision figures."""

    fold: Fold
    n_test: int
    n_test_fraud: int
    metrics: dict[str, dict[str, float]]
    figures: CascadeFigures
    choices: dict[str, Any] = field(default_factory=dict)
    #: under the handbook protocol: the same models' metrics on every transaction of the test week.
    metrics_all_cards: dict[str, dict[str, float]] | None = None
    #: the cascade's per-stage table on the test set (rules included).
    stage_table: StageTable | None = None


@dataclass
class NovelAttackResult:
    """Scenario-4 recall (blocked or reviewed) and review volume (cards/day), with and without anomaly detector."""

    first_seen: pd.Timestamp
    fold: Fold
    n_scenario: int
    recall_with_anomaly: float
    recall_without_anomaly: float
    review_cards_per_day_with_anomaly: float
    review_cards_per_day_without_anomaly: float


@dataclass
class EvaluationReport:
    """Everything one evaluation produced; :func:`format_report` prints it, :meth:`to_json` serializes it."""

    settings: EvaluationSettings
    folds: list[FoldResult]
    novel: NovelAttackResult | None = None
    feature_names: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, tuple[float, float]]]:
        """(mean, std over folds) per model and metric, plus ``figures`` for the cascade figures."""
        out: dict[str, dict[str, tuple[float, float]]] = {}
        for model in MODELS:
            out[model] = {m: _mean_std([f.metrics[model][m] for f in self.folds]) for m in METRICS}
        all_cards = [f.metrics_all_cards for f in self.folds if f.metrics_all_cards is not None]
        if self.folds and len(all_cards) == len(self.folds):
            for model in MODELS:
                out[f"{model}@all-cards"] = {m: _mean_std([fold[model][m] for fold in all_cards]) for m in METRICS}
        names = self.folds[0].figures.as_dict().keys() if self.folds else []
        out["figures"] = {n: _mean_std([f.figures.as_dict()[n] for f in self.folds]) for n in names}
        return out

    def stage_table(self) -> StageTable | None:
        """The per-stage tables of every fold, added up (None when a fold has none)."""
        tables = [f.stage_table for f in self.folds]
        if not tables or any(t is None for t in tables):
            return None
        total = StageTable()
        for t in tables:
            total = total.plus(t)  # type: ignore[arg-type]
        return total

    def to_json(self) -> dict[str, Any]:
        """Settings, summary, every fold and the novel-attack split as plain JSON types (``nan`` as ``None``)."""
        summary = self.summary()
        data: dict[str, Any] = {
            "settings": self.settings.model_dump(),
            "protocol": {"test_set": PROTOCOL_TEXT[self.settings.protocol],
                         "training": TRAINING_TEXT[self.settings.training]},
            "published_xgboost": PUBLISHED_XGBOOST,
            "summary": {k: {m: {"mean": _num(a), "std": _num(b)} for m, (a, b) in v.items()}
                        for k, v in summary.items()},
            "folds": [
                {"index": r.fold.index, "periods": r.fold.describe(), "n_test": r.n_test,
                 "n_test_fraud": r.n_test_fraud,
                 "metrics": {k: {m: _num(x) for m, x in v.items()} for k, v in r.metrics.items()},
                 "metrics_all_cards": None if r.metrics_all_cards is None else
                 {k: {m: _num(x) for m, x in v.items()} for k, v in r.metrics_all_cards.items()},
                 "cascade_figures": {k: _num(x) for k, x in r.figures.as_dict().items()},
                 "stage_table": None if r.stage_table is None else r.stage_table.to_json(),
                 "training_choices": r.choices}
                for r in self.folds
            ],
            "feature_names": list(self.feature_names),
        }
        if self.novel is not None:
            n = self.novel
            data["novel_attack"] = {
                "first_seen": n.first_seen.isoformat(), "periods": n.fold.describe(), "n_scenario": n.n_scenario,
                "recall_with_anomaly": _num(n.recall_with_anomaly),
                "recall_without_anomaly": _num(n.recall_without_anomaly),
                "review_cards_per_day_with_anomaly": _num(n.review_cards_per_day_with_anomaly),
                "review_cards_per_day_without_anomaly": _num(n.review_cards_per_day_without_anomaly),
            }
        return data


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


# ---- report table ------------------------------------------------------------------------------------------


def _pm(mean_std: tuple[float, float], fmt: str = "{:.3f}") -> str:
    mean, std = mean_std
    if np.isnan(mean):
        return "n/a"
    return f"{fmt.format(mean)} +- {fmt.format(std)}"


def _align(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def format_report(report: EvaluationReport) -> str:
    """The plain-text report: one aligned table of metrics and figures, with footnotes."""
    s = report.settings
    summary = report.summary()
    k = s.top_k
    test_weeks = ", ".join(r.fold.describe()["test"] for r in report.folds)
    lines = [
        f"fraudstream evaluation: {len(report.folds)} prequential folds, train {s.train_days} d, "
        f"delay {s.delay_days} d, test {s.test_days} d (mean +- std over folds)",
        f"test weeks: {test_weeks}",
        f"test set (--protocol {s.protocol}): {PROTOCOL_TEXT[s.protocol]}",
        f"trained on (--training {s.training}): {TRAINING_TEXT[s.training]}",
        "",
    ]
    rows = [["model", "AUC ROC", "AP", f"CP@{k}"]]
    pub = PUBLISHED_XGBOOST
    rows.append([MODEL_LABELS["published"] + " [1]", f"{pub['auc_roc']:.3f}", f"{pub['average_precision']:.3f}",
                 f"{pub['card_precision_at_k']:.3f}"])
    for model in MODELS:
        rows.append([MODEL_LABELS[model]] + [_pm(summary[model][m]) for m in METRICS])
    if f"{MODELS[0]}@all-cards" in summary:
        rows.append(["same models, every transaction (--protocol all-cards):", "", "", ""])
        for model in MODELS:
            rows.append(["  " + MODEL_LABELS[model]] + [_pm(summary[f"{model}@all-cards"][m]) for m in METRICS])
    fig = summary["figures"]
    pct = lambda name: _pm((100 * fig[name][0], 100 * fig[name][1]), "{:.1f}") + " %"  # noqa: E731
    rows += [
        ["", "", "", ""],
        ["cascade decisions [2]", "", "", "value"],
        ["  decided by rules", "", "", pct("share_rules")],
        ["  decided by light model + anomaly detector", "", "", pct("share_light")],
        ["  decided by heavy model", "", "", pct("share_heavy")],
        ["  blocked", "", "", pct("share_blocked")],
        ["  sent to review", "", "", pct("share_reviewed")],
        ["  block precision", "", "", _pm(fig["block_precision"])],
        ["  block recall", "", "", _pm(fig["block_recall"])],
        ["  review volume (cards/day)", "", "", _pm(fig["review_cards_per_day"], "{:.1f}")],
        ["  frauds caught (blocked or reviewed)", "", "", pct("fraud_caught_share")],
        ["  fraud amount stopped (currency units)", "", "", _pm(fig["fraud_amount_stopped"], "{:,.0f}")],
        ["  fraud amount stopped (share)", "", "", pct("fraud_amount_stopped_share")],
    ]
    n = report.novel
    if n is not None:
        rows += [
            ["", "", "", ""],
            [f"novel attack (scenario {NOVEL_SCENARIO}) [3]", "", "recall", "review cards/day"],
            ["  cascade with anomaly detector", "", _pct1(n.recall_with_anomaly),
             f"{n.review_cards_per_day_with_anomaly:.1f}"],
            ["  cascade without anomaly detector", "", _pct1(n.recall_without_anomaly),
             f"{n.review_cards_per_day_without_anomaly:.1f}"],
        ]
    lines += _align(rows)
    stages = report.stage_table()
    if stages is not None:
        lines += ["", format_stage_table(stages, "per-stage table [2], all folds' test sets added up")]
    lines += [
        "",
        "[1] published figures of the handbook's XGBoost baseline on its own test folds; quoted, not recomputed. "
        "Light and heavy models rank by their uncalibrated probability (the heavy one on every row), the cascade "
        "by its risk.",
        f"[2] on the test set above; thresholds calibrated on the validation period (its labels are known "
        f"{s.delay_days} d after each transaction, before the test week starts); review capacity "
        f"{s.review_capacity} cards/day.",
    ]
    if n is not None:
        d = n.fold.describe()
        lines.append(
            f"[3] trained on {d['train']} (validation {d['valid']}), before the first scenario-{NOVEL_SCENARIO} "
            f"transaction ({n.first_seen}); tested on {d['test']} ({n.n_scenario} scenario-{NOVEL_SCENARIO} "
            f"transactions); recall = share blocked or reviewed."
        )
    return "\n".join(lines)


def _pct1(x: float) -> str:
    return "n/a" if np.isnan(x) else f"{100 * x:.1f} %"
