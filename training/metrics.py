"""Detection metrics of the handbook protocol and decision figures of the cascade (pure numpy / scikit-learn).

Threshold-free ranking metrics (AUC ROC, average precision, card precision@k) judge a score; the cascade
figures judge the decisions (block / review / allow) actually taken on a test period.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from fraudstream.detectors.cascade.calibration import daily_cards
from fraudstream.detectors.cascade.types import CascadeResult, Decision, Stage

#: The handbook's card precision cut-off: cards an analyst team can check per day.
DEFAULT_TOP_K = 100


def _as_1d(name: str, values: Any, dtype: Any = None) -> np.ndarray:
    arr = np.asarray(values, dtype=dtype)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array, got shape {arr.shape}")
    return arr


def _check_same_length(**arrays: np.ndarray) -> None:
    lengths = {name: arr.shape[0] for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays differ in length: {lengths}")


def _labels(name: str, values: Any) -> np.ndarray:
    arr = _as_1d(name, values)
    if arr.dtype == bool:
        return arr
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: labels must be 0/1, row {row} holds {arr[row]!r}")
    return arr.astype(bool)


def _scores(name: str, values: Any) -> np.ndarray:
    arr = _as_1d(name, values, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: scores must be finite, row {row} holds {arr[row]!r}")
    return arr


def roc_auc(fraud: Any, score: Any) -> float:
    """Area under the ROC curve; ``nan`` when the labels hold a single class."""
    y, s = _labels("fraud", fraud), _scores("score", score)
    _check_same_length(fraud=y, score=s)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, s))


def average_precision(fraud: Any, score: Any) -> float:
    """Average precision (area under the precision-recall curve, step-wise); ``nan`` without any fraud."""
    y, s = _labels("fraud", fraud), _scores("score", score)
    _check_same_length(fraud=y, score=s)
    if not y.any():
        return float("nan")
    return float(average_precision_score(y, s))


@dataclass(frozen=True)
class CardPrecisionAtK:
    """Card precision@k of a test period.

    Attributes
    ----------
    mean : mean of the daily precisions (the handbook's CP@k).
    days : the days, in increasing order.
    per_day : share of the day's top-k cards that had at least one fraud that day (divided by k, even when fewer
        than k cards are left).
    detected_cards : customer ids counted as detected (compromised and in a day's top k), in detection order.
    """

    mean: float
    days: np.ndarray
    per_day: np.ndarray
    detected_cards: np.ndarray


def card_precision_at_k(
    day: Any, customer_id: Any, fraud: Any, score: Any, k: int = DEFAULT_TOP_K, remove_detected: bool = True
) -> CardPrecisionAtK:
    """The handbook's card precision@k, averaged over days.

    For each day (in increasing order) every card (customer) is scored by its highest transaction score that
    day and is fraudulent when any of its transactions that day is.  Cards detected on earlier days (fraudulent
    and in that day's top k) are left out when ``remove_detected``.  Ties in score are broken by customer id.

    Parameters
    ----------
    day : day of each transaction (any sortable value, e.g. ``TX_TIME_DAYS``).
    customer_id : card of each transaction.
    fraud : 0/1 label of each transaction.
    score : risk of each transaction (higher = more suspicious).
    k : cards checked per day.
    remove_detected : drop cards already detected on earlier days, as the handbook does.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    d = _as_1d("day", day)
    c = _as_1d("customer_id", customer_id)
    y = _labels("fraud", fraud)
    s = _scores("score", score)
    _check_same_length(day=d, customer_id=c, fraud=y, score=s)

    days = np.unique(d)
    per_day = np.zeros(days.shape[0], dtype=np.float64)
    detected: list[np.ndarray] = []
    detected_set = np.empty(0, dtype=c.dtype)
    for i, this_day in enumerate(days):
        rows = d == this_day
        if remove_detected and detected_set.size:
            rows &= ~np.isin(c, detected_set)
        cards, card_score, card_fraud = _per_card_max(c[rows], s[rows], y[rows])
        order = np.lexsort((cards, -card_score))[:k]
        hits = card_fraud[order]
        per_day[i] = hits.sum() / k
        newly = cards[order][hits]
        detected.append(newly)
        if remove_detected:
            detected_set = np.concatenate([detected_set, newly])
    detected_cards = np.concatenate(detected) if detected else np.empty(0, dtype=c.dtype)
    mean = float(per_day.mean()) if days.size else float("nan")
    return CardPrecisionAtK(mean=mean, days=days, per_day=per_day, detected_cards=detected_cards)


def _per_card_max(cards: np.ndarray, score: np.ndarray, fraud: np.ndarray) -> tuple[np.ndarray, ...]:
    """Distinct cards with their highest score and whether any of their rows is a fraud."""
    if cards.size == 0:
        return cards, score, fraud
    order = np.argsort(cards, kind="stable")
    cards, score, fraud = cards[order], score[order], fraud[order]
    starts = np.flatnonzero(np.r_[True, cards[1:] != cards[:-1]])
    return cards[starts], np.maximum.reduceat(score, starts), np.logical_or.reduceat(fraud, starts)


def distinct_cards_per_day(day: np.ndarray, customer_id: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Number of distinct cards with a ``selected`` transaction, for each day of ``day`` (increasing order)."""
    days, index = np.unique(np.asarray(day), return_inverse=True)
    return daily_cards(np.asarray(selected, dtype=bool), np.asarray(customer_id), index.ravel(),
                       days.size).astype(np.int64)


def caught_share(decision: Any, selected: Any) -> float:
    """Share of the ``selected`` transactions that were blocked or sent to review; ``nan`` when none selected."""
    dec = _as_1d("decision", decision)
    sel = _labels("selected", selected)
    _check_same_length(decision=dec, selected=sel)
    if not sel.any():
        return float("nan")
    stopped = (dec == Decision.BLOCK) | (dec == Decision.REVIEW)
    return float(stopped[sel].mean())


@dataclass(frozen=True)
class CascadeFigures:
    """What the cascade's decisions did on a test period.

    Attributes
    ----------
    share_rules, share_light, share_heavy : share of transactions whose decision was settled at that stage.
    share_blocked, share_reviewed : share of transactions blocked / sent to review.
    block_precision : frauds among blocked transactions (``nan`` when nothing was blocked).
    block_recall : blocked frauds / all frauds.
    review_cards_per_day : mean over days of the distinct cards with a transaction sent to review (cards/day).
    fraud_caught_share : frauds blocked or reviewed / all frauds.
    fraud_amount : total amount of the frauds (currency units).
    fraud_amount_stopped : amount of the frauds blocked or reviewed (currency units).
    fraud_amount_stopped_share : ``fraud_amount_stopped / fraud_amount``.
    """

    share_rules: float
    share_light: float
    share_heavy: float
    share_blocked: float
    share_reviewed: float
    block_precision: float
    block_recall: float
    review_cards_per_day: float
    fraud_caught_share: float
    fraud_amount: float
    fraud_amount_stopped: float
    fraud_amount_stopped_share: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def cascade_figures(
    result: CascadeResult, fraud: Any, amount: Any, customer_id: Any, day: Any
) -> CascadeFigures:
    """Decision figures of one :class:`CascadeResult`, row-aligned with the labels and transactions.

    Parameters
    ----------
    result : the cascade's output on the test transactions.
    fraud : 0/1 label per transaction.
    amount : amount per transaction (currency units).
    customer_id : card per transaction.
    day : day per transaction (review volume is counted per day).
    """
    dec = _as_1d("decision", result.decision)
    stage = _as_1d("stage", result.stage)
    y = _labels("fraud", fraud)
    amt = _scores("amount", amount)
    cust = _as_1d("customer_id", customer_id)
    d = _as_1d("day", day)
    _check_same_length(decision=dec, stage=stage, fraud=y, amount=amt, customer_id=cust, day=d)
    n = dec.shape[0]
    if n == 0:
        raise ValueError("cascade_figures: no transactions")
    blocked = dec == Decision.BLOCK
    reviewed = dec == Decision.REVIEW
    stopped = blocked | reviewed
    n_fraud = int(y.sum())
    fraud_amount = float(amt[y].sum())
    stopped_amount = float(amt[y & stopped].sum())
    return CascadeFigures(
        share_rules=float((stage == Stage.RULES).mean()),
        share_light=float((stage == Stage.LIGHT).mean()),
        share_heavy=float((stage == Stage.HEAVY).mean()),
        share_blocked=float(blocked.mean()),
        share_reviewed=float(reviewed.mean()),
        block_precision=_ratio((blocked & y).sum(), blocked.sum()),
        block_recall=_ratio((blocked & y).sum(), n_fraud),
        review_cards_per_day=float(distinct_cards_per_day(d, cust, reviewed).mean()),
        fraud_caught_share=_ratio((stopped & y).sum(), n_fraud),
        fraud_amount=fraud_amount,
        fraud_amount_stopped=stopped_amount,
        fraud_amount_stopped_share=_ratio(stopped_amount, fraud_amount),
    )
