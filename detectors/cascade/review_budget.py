"""The review budget: at most ``cases_per_day`` cards sent to REVIEW per UTC day of event time.

The thresholds are calibrated so that the usual review load stays under the analysts' capacity, with headroom
(:mod:`~fraudstream.detectors.cascade.calibration`); an attack brings its own cards on top of it, and the queue
then grows faster than the analysts can work it.  The budget bounds what reaches the queue, per UTC day of the
transactions' event time:

- a REVIEW of a card that already has one that day joins the card's case: it always stands;
- a REVIEW of another card opens a case while the day has fewer than ``cases_per_day`` of them;
- past that it becomes ALLOW, its stage, risk and scores kept, with :data:`REASON_REVIEW_BUDGET` first among its
  reasons (the record says the queue was full, and the analysts can still find it by its scores).

First come, first served in event-time order: the rows must come in that order (the worker's batches do).  BLOCK
and ALLOW decisions are never touched.  The cards that opened a case are the state to keep between batches
(:func:`apply_review_budget` returns them by day).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from fraudstream.detectors.cascade.types import CascadeResult, Decision
from fraudstream.detectors.features.definition import DAY_S

#: First reason of a REVIEW that became ALLOW because the day's budget of cases was spent.
REASON_REVIEW_BUDGET = "review_budget:spent"


class Budgeted(NamedTuple):
    """What :func:`apply_review_budget` gives: the result, the cards that opened a case in it by UTC day (in
    order; none of them among the cases given), and how many REVIEWs became ALLOW."""

    result: CascadeResult
    opened: dict[int, list[int]]
    allowed: int


def event_days(timestamps_s: np.ndarray) -> np.ndarray:
    """UTC day number (days since the epoch) of each event time (epoch s)."""
    return np.floor_divide(np.asarray(timestamps_s, dtype=np.float64), DAY_S).astype(np.int64)


def apply_review_budget(result: CascadeResult, timestamps_s: np.ndarray, cards: np.ndarray,
                        cases: Mapping[int, Set[int]], cases_per_day: int) -> Budgeted:
    """``result`` with the REVIEWs past the day's budget turned into ALLOW, and the cards that opened a case.

    Parameters
    ----------
    result : the cascade's output, rows in event-time order.
    timestamps_s, cards : each row's event time (epoch s) and card (customer id).
    cases : UTC day -> cards that have a case on that day already (before these rows).
    cases_per_day : the budget (cards a day); 0 or less: no budget, nothing changes.
    """
    if cases_per_day <= 0:
        return Budgeted(result, {}, 0)
    review = np.flatnonzero(np.asarray(result.decision) == Decision.REVIEW)
    if review.size == 0:
        return Budgeted(result, {}, 0)
    days = event_days(np.asarray(timestamps_s)[review]).tolist()
    opened: dict[int, list[int]] = {}
    seen: dict[int, set[int]] = {}
    over: list[int] = []
    for row, day, card in zip(review.tolist(), days, np.asarray(cards)[review].tolist()):
        known = seen.get(day)
        if known is None:
            known = seen[day] = set(cases.get(day, ()))
        if card in known:
            continue
        if len(known) < cases_per_day:
            known.add(card)
            opened.setdefault(day, []).append(card)
        else:
            over.append(row)
    if not over:
        return Budgeted(result, opened, 0)
    decision = np.array(result.decision, copy=True)
    decision[over] = Decision.ALLOW
    reasons = list(result.reasons)
    for i in over:
        reasons[i] = (REASON_REVIEW_BUDGET, *reasons[i])
    return Budgeted(replace(result, decision=decision, reasons=reasons), opened, len(over))
