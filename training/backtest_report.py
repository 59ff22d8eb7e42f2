"""Figures of a backtest run, side-by-side comparisons with a paired day bootstrap, the text table and JSON.

Every figure is a function of the run's days, so a bootstrap resamples whole days (with replacement) and
recomputes each figure with those multiplicities; for challengers the same resampled days are used for both
runs (paired), and the interval of the difference is the 2.5 to 97.5 percentile of the resampled differences.

Detection figures rank by ``RISK`` on the period's handbook-style test set (``HANDBOOK_TEST``); "stopped" means
BLOCK or REVIEW, on every transaction of the period.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fraudstream.detectors.features.definition import DAY_S, HOUR_S
from fraudstream.detectors.schema import CUSTOMER_ID, TX_AMOUNT, TX_DATETIME, TX_FRAUD, datetime_to_epoch_seconds
from fraudstream.training.backtest import CARD_ID, HANDBOOK_TEST, BacktestRun, allowed_over_budget, blocked_by_list
from fraudstream.training.metrics import DEFAULT_TOP_K, card_precision_at_k

#: Figures in report order: (key, label, format).
FIGURES: tuple[tuple[str, str, str], ...] = (
    ("auc_roc", "AUC ROC (handbook test set)", "{:.3f}"),
    ("average_precision", "AP (handbook test set)", "{:.3f}"),
    ("card_precision_at_k", f"CP@{DEFAULT_TOP_K} (handbook test set)", "{:.3f}"),
    ("fraud_stopped_share", "frauds stopped (blocked or reviewed)", "{:.3f}"),
    ("fraud_blocked_share", "frauds blocked", "{:.3f}"),
    ("fraud_amount_stopped_share", "fraud amount stopped (share)", "{:.3f}"),
    ("fraud_amount_stopped_per_day", "fraud amount stopped per day", "{:,.0f}"),
    ("review_cases_per_day", "review cases per day", "{:.1f}"),
    ("over_budget_per_day", "REVIEWs allowed over the review budget per day", "{:.1f}"),
    ("queue_age_mean_h", "queue age of worked cases, mean (h)", "{:.2f}"),
    ("cases_expired_per_day", "cases expired per day", "{:.2f}"),
    ("block_precision", "block precision", "{:.3f}"),
    ("blocked_by_list_per_day", "transactions blocked by the block list per day", "{:.1f}"),
    ("legit_blocked_per_day", "legitimate transactions blocked per day", "{:.1f}"),
    ("legit_reviewed_per_day", "legitimate transactions reviewed per day", "{:.1f}"),
)
FIGURE_KEYS = tuple(key for key, _, _ in FIGURES)
DEFAULT_BOOTSTRAP = 200


def _weighted_rank_metrics(order_y: np.ndarray, group_end: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """AUC ROC and average precision of rows pre-sorted by decreasing score, with row weights ``w``.

    ``group_end`` holds the last index of each run of tied scores; ties count as one threshold (as scikit-learn).
    """
    tp = np.cumsum(w * order_y)[group_end]
    fp = np.cumsum(w * ~order_y)[group_end]
    p, n = tp[-1] if tp.size else 0.0, fp[-1] if fp.size else 0.0
    if p <= 0 or n <= 0:
        return float("nan"), float("nan")
    d_tp = np.diff(tp, prepend=0.0)
    d_fp = np.diff(fp, prepend=0.0)
    precision = tp / np.maximum(tp + fp, 1e-300)
    ap = float(np.sum(d_tp * precision) / p)
    auc = float(np.sum(d_fp * (tp - d_tp / 2.0)) / (p * n))
    return auc, ap


@dataclass
class _RunDays:
    """A run's rows indexed by period day, precomputed once for every resample."""

    n_days: int
    test_day: np.ndarray  # day index of each test row, in decreasing risk order
    test_y: np.ndarray
    group_end: np.ndarray
    cp_per_day: np.ndarray  # per day index (nan where the day has no test row)
    per_day: dict[str, np.ndarray]  # sums per day index
    queue_age_day: np.ndarray
    queue_age_h: np.ndarray


def _prepare(run: BacktestRun, first_day: int, n_days: int) -> _RunDays:
    d = run.decisions
    t = datetime_to_epoch_seconds(d[TX_DATETIME])
    day = (t // DAY_S).astype(np.int64) - first_day
    y = d[TX_FRAUD].to_numpy().astype(bool)
    risk = d["RISK"].to_numpy(dtype=np.float64)
    dec = d["DECISION"].to_numpy()
    amount = d[TX_AMOUNT].to_numpy(dtype=np.float64)
    blocked, reviewed = dec == "BLOCK", dec == "REVIEW"
    stopped = blocked | reviewed
    by_list = blocked_by_list(d)

    def per_day(values: np.ndarray) -> np.ndarray:
        return np.bincount(day, weights=values.astype(np.float64), minlength=n_days)[:n_days]

    sums = {
        "fraud": per_day(y), "fraud_stopped": per_day(y & stopped), "fraud_blocked": per_day(y & blocked),
        "fraud_amount": per_day(np.where(y, amount, 0.0)),
        "fraud_amount_stopped": per_day(np.where(y & stopped, amount, 0.0)),
        "blocked": per_day(blocked), "blocked_fraud": per_day(blocked & y), "by_list": per_day(by_list),
        "over_budget": per_day(allowed_over_budget(d)),
        "legit_blocked": per_day(blocked & ~y), "legit_reviewed": per_day(reviewed & ~y),
    }
    analysts = run.analysts
    if analysts is not None:
        log = analysts.log
        sums["cases"] = _day_counts(log.opened_per_day, first_day, n_days)
        sums["expired"] = _day_counts(log.expired_per_day, first_day, n_days)
        worked = np.array(sorted(log.worked_per_day), dtype=np.int64)
        ages = np.asarray(log.queue_age_s, dtype=np.float64) / HOUR_S
        age_day = np.repeat(worked, [log.worked_per_day[k] for k in worked.tolist()]) - first_day
    else:  # without analysts a case is still a card with REVIEW items that day
        cards = d[CARD_ID].to_numpy()
        sums["cases"] = np.array([np.unique(cards[reviewed & (day == k)]).size for k in range(n_days)], float)
        sums["expired"] = np.full(n_days, np.nan)
        ages, age_day = np.empty(0), np.empty(0, dtype=np.int64)

    test = d[HANDBOOK_TEST].to_numpy().astype(bool)
    order = np.argsort(-risk[test], kind="stable")
    sorted_risk = risk[test][order]
    group_end = np.flatnonzero(np.r_[sorted_risk[1:] != sorted_risk[:-1], True]) if sorted_risk.size else \
        np.empty(0, dtype=np.int64)
    cp = card_precision_at_k(day[test], d[CUSTOMER_ID].to_numpy()[test], y[test], risk[test], DEFAULT_TOP_K)
    cp_per_day = np.full(n_days, np.nan)
    cp_per_day[cp.days.astype(np.int64)] = cp.per_day
    keep_age = (age_day >= 0) & (age_day < n_days)
    return _RunDays(n_days, day[test][order], y[test][order], group_end, cp_per_day, sums, age_day[keep_age],
                    ages[keep_age])


def _day_counts(counts: dict[int, int], first_day: int, n_days: int) -> np.ndarray:
    out = np.zeros(n_days)
    for day, count in counts.items():
        if 0 <= day - first_day < n_days:
            out[day - first_day] = count
    return out


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def _figures(r: _RunDays, w: np.ndarray) -> dict[str, float]:
    """Every figure with day multiplicities ``w`` (ones = the run as it is)."""
    s = {k: float(np.dot(w, np.nan_to_num(v))) for k, v in r.per_day.items()}
    days = float(w.sum())
    auc, ap = _weighted_rank_metrics(r.test_y, r.group_end, w[r.test_day])
    cp_ok = ~np.isnan(r.cp_per_day)
    age_w = w[r.queue_age_day]
    expired = np.nan if np.isnan(r.per_day["expired"]).all() else s["expired"] / days
    return {
        "auc_roc": auc, "average_precision": ap,
        "card_precision_at_k": _ratio(float(np.dot(w[cp_ok], r.cp_per_day[cp_ok])), float(w[cp_ok].sum())),
        "fraud_stopped_share": _ratio(s["fraud_stopped"], s["fraud"]),
        "fraud_blocked_share": _ratio(s["fraud_blocked"], s["fraud"]),
        "fraud_amount_stopped_share": _ratio(s["fraud_amount_stopped"], s["fraud_amount"]),
        "fraud_amount_stopped_per_day": s["fraud_amount_stopped"] / days,
        "review_cases_per_day": s["cases"] / days,
        "over_budget_per_day": s["over_budget"] / days,
        "queue_age_mean_h": _ratio(float(np.dot(age_w, r.queue_age_h)), float(age_w.sum())),
        "cases_expired_per_day": expired,
        "block_precision": _ratio(s["blocked_fraud"], s["blocked"]),
        "blocked_by_list_per_day": s["by_list"] / days,
        "legit_blocked_per_day": s["legit_blocked"] / days,
        "legit_reviewed_per_day": s["legit_reviewed"] / days,
    }


@dataclass
class Comparison:
    """Figures of every run, and per challenger the paired bootstrap of (challenger - champion).

    figures : one dict per run (champion first).
    diff_ci : per challenger, figure -> (difference, low, high) with a 95% interval.
    """

    names: list[str]
    figures: list[dict[str, float]]
    diff_ci: list[dict[str, tuple[float, float, float]]]
    n_days: int
    n_bootstrap: int


def compare(runs: list[BacktestRun], names: list[str], n_bootstrap: int = DEFAULT_BOOTSTRAP,
            seed: int = 0) -> Comparison:
    """Figures of each run; with more than one run, paired day-bootstrap intervals of each difference."""
    start = datetime_to_epoch_seconds(runs[0].decisions[TX_DATETIME].iloc[:1])[0]
    end = datetime_to_epoch_seconds(runs[0].decisions[TX_DATETIME].iloc[-1:])[0]
    first_day, n_days = int(start // DAY_S), int(end // DAY_S) - int(start // DAY_S) + 1
    prepared = [_prepare(run, first_day, n_days) for run in runs]
    ones = np.ones(n_days)
    figures = [_figures(r, ones) for r in prepared]
    diff_ci: list[dict[str, tuple[float, float, float]]] = []
    if len(runs) > 1:
        rng = np.random.default_rng(seed)
        draws = [np.bincount(rng.integers(0, n_days, n_days), minlength=n_days).astype(float)
                 for _ in range(n_bootstrap)]
        champion = [_figures(prepared[0], w) for w in draws]
        for r, fig in zip(prepared[1:], figures[1:]):
            boot = [_figures(r, w) for w in draws]
            out = {}
            for key in FIGURE_KEYS:
                diffs = np.array([b[key] - c[key] for b, c in zip(boot, champion)], dtype=np.float64)
                diffs = diffs[~np.isnan(diffs)]
                low, high = (np.percentile(diffs, [2.5, 97.5]) if diffs.size else (np.nan, np.nan))
                out[key] = (fig[key] - figures[0][key], float(low), float(high))
            diff_ci.append(out)
    return Comparison(list(names), figures, diff_ci, n_days, n_bootstrap if len(runs) > 1 else 0)


def _fmt(fmt: str, value: float) -> str:
    return "n/a" if value is None or np.isnan(value) else fmt.format(value)


def format_comparison(comparison: Comparison, runs: list[BacktestRun]) -> str:
    """The plain-text report: one column per run, and per challenger its difference with a 95% interval."""
    head = ["figure"] + comparison.names
    for name in comparison.names[1:]:
        head.append(f"{name} - {comparison.names[0]} [95% CI]")
    rows = [head]
    for key, label, fmt in FIGURES:
        row = [label] + [_fmt(fmt, fig[key]) for fig in comparison.figures]
        for ci in comparison.diff_ci:
            diff, low, high = ci[key]
            row.append(f"{_fmt('{:+' + fmt[2:], diff)} [{_fmt(fmt, low)}, {_fmt(fmt, high)}]")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in rows]
    s = runs[-1].settings
    analysts = next((r.settings.analysts for r in runs if r.settings.analysts is not None), None)
    notes = [
        f"period {s.start}..{s.end} ({comparison.n_days} days), warm-up "
        f"{'auto' if s.warmup_days is None else s.warmup_days} d; chargebacks "
        f"{s.labels_delay.describe()}; block list: {s.block_mode}"
        + (f" ({s.block_days:g} d)" if s.block_mode == "card" else "")
        + (", analysts' fraud verdicts and chargebacks" if s.block_on_chargeback else ", analysts' fraud verdicts"),
        "analysts: none (chargebacks only)" if analysts is None else
        f"analysts: {analysts.capacity_cards_per_day} cards/day, verdict {analysts.delay_s / HOUR_S:g} h after a case "
        f"opens, cases expire after {analysts.case_expiry_s / DAY_S:g} d, error rate {analysts.error_rate:g}",
        "test set: each day without the cards with a fraud 8 to 14 days earlier (the handbook's known-compromised "
        "cards); stopped = BLOCK or REVIEW; figures per day are means over the period's days.",
    ]
    for name, run in zip(comparison.names, runs):
        notes.append(f"{name}: model {run.model_version}" + ("" if run.settings.analysts is not None else
                                                             ", no analysts"))
    if comparison.diff_ci:
        notes.append(f"intervals: paired bootstrap over days, {comparison.n_bootstrap} resamples")
    return "\n".join(lines + [""] + notes)


def comparison_json(comparison: Comparison, runs: list[BacktestRun]) -> dict[str, Any]:
    """The comparison as plain JSON types (``nan`` as ``None``)."""
    num = lambda x: None if x is None or np.isnan(x) else float(x)  # noqa: E731
    return {
        "runs": [{"name": n, "model_version": r.model_version, "figures": {k: num(v) for k, v in f.items()}}
                 for n, r, f in zip(comparison.names, runs, comparison.figures)],
        "differences": [{"challenger": n, "figures": {k: {"diff": num(a), "low": num(b), "high": num(c)}
                                                      for k, (a, b, c) in ci.items()}}
                        for n, ci in zip(comparison.names[1:], comparison.diff_ci)],
        "n_days": comparison.n_days, "n_bootstrap": comparison.n_bootstrap,
    }
