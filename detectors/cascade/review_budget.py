"""The review budget: at most ``cases_per_day`` review cases opened per UTC day of event time.

The thresholds are calibrated so that the usual review load stays under the analysts' capacity, with headroom
(:mod:`~fraudstream.detectors.cascade.calibration`); an attack brings its own cards on top of it, and the queue
then grows faster than the analysts can work it.  The budget bounds what reaches the queue, per UTC day of the
transactions' event time, counting cases as the analysts do (one open case per card):

- a REVIEW of a card whose case is open joins it: it always stands;
- a REVIEW of another card opens a case while the day has opened fewer than ``cases_per_day``;
- past that it becomes ALLOW, its stage, risk and scores kept, with :data:`REASON_REVIEW_BUDGET` first among its
  reasons (the record says the queue was full);
- a label on a transaction that went to REVIEW (a verdict, or a chargeback that settles it) closes its card's
  case, so a later REVIEW of the card opens a new one.

First come, first served in event-time order: the rows must come in that order (the worker's batches do).  BLOCK
and ALLOW decisions are never touched.  A day's cases are kept as a log of entries (:func:`opened_entry`,
:func:`closed_entry`) that :meth:`DayCases.from_log` reads back; each call returns the entries it adds.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from fraudstream.detectors.cascade.types import CascadeResult, Decision
from fraudstream.detectors.features.definition import DAY_S

#: First reason of a REVIEW that became ALLOW because the day's budget of cases was spent.
REASON_REVIEW_BUDGET = "review_budget:spent"


@dataclass
class DayCases:
    """One UTC day's review cases: the cards whose case is open, and how many cases the day has opened."""

    open: set[int] = field(default_factory=set)
    opened: int = 0

    @classmethod
    def from_log(cls, entries: Iterable[int]) -> DayCases:
        """The day's cases from its log entries, in order."""
        cases = cls()
        for entry in entries:
            if entry >= 0:
                if entry not in cases.open:
                    cases.open.add(entry)
                    cases.opened += 1
            else:
                cases.open.discard(-entry - 1)
        return cases


def opened_entry(card: int) -> int:
    """Log entry of a case opened for ``card`` (a card id >= 0)."""
    return card


def closed_entry(card: int) -> int:
    """Log entry of ``card``'s case closed."""
    return -card - 1


class Budgeted(NamedTuple):
    """What :func:`apply_review_budget` gives: the result, the log entries it added by UTC day, and how many
    REVIEWs became ALLOW."""

    result: CascadeResult
    entries: dict[int, list[int]]
    allowed: int


def event_days(timestamps_s: np.ndarray) -> np.ndarray:
    """UTC day number (days since the epoch) of each event time (epoch s)."""
    return np.floor_divide(np.asarray(timestamps_s, dtype=np.float64), DAY_S).astype(np.int64)


def event_day(timestamp_s: float) -> int:
    """UTC day number of one event time (epoch s)."""
    return int(timestamp_s // DAY_S)


def close_cases(cases: MutableMapping[int, DayCases], reviewed: Iterable[tuple[int, int]]) -> dict[int, list[int]]:
    """Close the open cases of these (UTC day, card) pairs (labels on transactions that went to REVIEW; days not in
    ``cases`` are left alone); updates ``cases`` and returns the log entries added, by day."""
    entries: dict[int, list[int]] = {}
    for day, card in reviewed:
        day_cases = cases.get(day)
        if day_cases is not None and card in day_cases.open:
            day_cases.open.discard(card)
            entries.setdefault(day, []).append(closed_entry(card))
    return entries


def apply_review_budget(result: CascadeResult, timestamps_s: np.ndarray, cards: np.ndarray,
                        cases: MutableMapping[int, DayCases], cases_per_day: int) -> Budgeted:
    """``result`` with the REVIEWs past the day's budget turned into ALLOW; ``cases`` updated with the cases opened.

    Parameters
    ----------
    result : the cascade's output, rows in event-time order.
    timestamps_s, cards : each row's event time (epoch s) and card (customer id).
    cases : UTC day -> that day's cases before these rows (a day missing starts empty).
    cases_per_day : the budget (cases a day); 0 or less: no budget, nothing changes.
    """
    if cases_per_day <= 0:
        return Budgeted(result, {}, 0)
    review = np.flatnonzero(np.asarray(result.decision) == Decision.REVIEW)
    if review.size == 0:
        return Budgeted(result, {}, 0)
    days = event_days(np.asarray(timestamps_s)[review]).tolist()
    entries: dict[int, list[int]] = {}
    over: list[int] = []
    for row, day, card in zip(review.tolist(), days, np.asarray(cards)[review].tolist()):
        day_cases = cases.get(day)
        if day_cases is None:
            day_cases = cases[day] = DayCases()
        if card in day_cases.open:
            continue
        if day_cases.opened < cases_per_day:
            day_cases.open.add(card)
            day_cases.opened += 1
            entries.setdefault(day, []).append(opened_entry(card))
        else:
            over.append(row)
    if not over:
        return Budgeted(result, entries, 0)
    decision = np.array(result.decision, copy=True)
    decision[over] = Decision.ALLOW
    reasons = list(result.reasons)
    for i in over:
        reasons[i] = (REASON_REVIEW_BUDGET, *reasons[i])
    return Budgeted(replace(result, decision=decision, reasons=reasons), entries, len(over))
