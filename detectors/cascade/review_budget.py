"""The review budget: at most ``cases_per_day`` review cases opened per UTC day of event time.

The thresholds are calibrated so that the usual review load stays under the analysts' capacity, with headroom
(:mod:`~fraudstream.detectors.cascade.calibration`); an attack brings its own cards on top of it, and the queue
then grows faster than the analysts can work it.  The budget bounds what reaches the queue, per UTC day of the
transactions' event time, counting cases as the analysts do (one open case per card):

- a REVIEW of a card whose case is open joins it: it always stands (a case opened on one of the
  :data:`CASE_LOOKBACK_DAYS` days before stays open into this one, as the review service keeps one open case per
  card whatever the day, until a verdict closes it);
- a REVIEW of another card opens a case while the day has opened fewer than ``cases_per_day``;
- past that it becomes ALLOW, its stage, risk and scores kept, with :data:`REASON_REVIEW_BUDGET` first among its
  reasons (the record says the queue was full);
- an analyst's verdict on one of the transactions of the card's case closes it from the verdict's ``known_at``
  on, so a later REVIEW of the card opens a new one.

A case is open at event time ``t`` when the card opened one (the latest at ``o``, on the day of ``t`` or one of the
look-back days) and no verdict was known in ``(o, t]``: the answer does not depend on whether the verdict or the
transaction reached the worker first.  First come, first served in event-time order: the rows must come in that
order (the worker's batches do).  BLOCK and ALLOW decisions are never touched.  A day's cases are kept as a log of
(code, time) entries (:func:`opened_entry`, :func:`closed_entry`) that :meth:`DayCases.from_log` reads back; each
call returns the entries it adds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from fraudstream.detectors.cascade.types import CascadeResult, Decision
from fraudstream.detectors.features.definition import DAY_S

#: First reason of a REVIEW that became ALLOW because the day's budget of cases was spent.
REASON_REVIEW_BUDGET = "review_budget:spent"

#: UTC days before a transaction's day whose open cases it may join (a case opened late on a day stays open into
#: the next ones until a verdict).  Each day's log must be kept longer than this: the worker's expire after 3 days.
CASE_LOOKBACK_DAYS = 2

#: A log entry: (card id >= 0 for a case opened, ``-card - 1`` for a verdict; event time or ``known_at``, epoch s).
LogEntry = tuple[int, float]


@dataclass
class DayCases:
    """One UTC day's review cases: how many the day opened, when each card's latest one opened, and when the
    verdicts on the card's transactions of the day became known (epoch s)."""

    opened: int = 0
    last_open: dict[int, float] = field(default_factory=dict)
    verdicts: dict[int, list[float]] = field(default_factory=dict)

    def is_open(self, card: int, t: float) -> bool:
        """Whether ``card`` has a case open at event time ``t`` (epoch s)."""
        o = self.last_open.get(card)
        return o is not None and not any(o < k <= t for k in self.verdicts.get(card, ()))

    def open(self, card: int, t: float) -> None:
        self.opened += 1
        self.last_open[card] = t

    def close(self, card: int, known_at: float) -> None:
        self.verdicts.setdefault(card, []).append(known_at)

    @classmethod
    def from_log(cls, entries: Iterable[LogEntry]) -> DayCases:
        """The day's cases from its log entries, in order (a case opened twice at once, by two workers, counts
        once)."""
        cases = cls()
        for code, t in entries:
            if code < 0:
                cases.close(-code - 1, t)
            elif not cases.is_open(code, t):
                cases.open(code, t)
        return cases


def opened_entry(card: int, t: float) -> LogEntry:
    """Log entry of a case opened for ``card`` (an id >= 0) by its transaction at event time ``t``."""
    return card, t


def closed_entry(card: int, known_at: float) -> LogEntry:
    """Log entry of a verdict on ``card`` known from ``known_at``."""
    return -card - 1, known_at


class Budgeted(NamedTuple):
    """What :func:`apply_review_budget` gives: the result, the log entries it added by UTC day, and how many
    REVIEWs became ALLOW."""

    result: CascadeResult
    entries: dict[int, list[LogEntry]]
    allowed: int


def event_days(timestamps_s: np.ndarray) -> np.ndarray:
    """UTC day number (days since the epoch) of each event time (epoch s)."""
    return np.floor_divide(np.asarray(timestamps_s, dtype=np.float64), DAY_S).astype(np.int64)


def event_day(timestamp_s: float) -> int:
    """UTC day number of one event time (epoch s)."""
    return int(timestamp_s // DAY_S)


def record_verdicts(cases: MutableMapping[int, DayCases], verdicts: Iterable[tuple[float, int, int]]
                    ) -> dict[int, list[LogEntry]]:
    """Record analysts' verdicts, each (``known_at`` epoch s, UTC day of its transaction, card), in ``cases`` (a
    day missing starts empty); returns the log entries added, by day."""
    entries: dict[int, list[LogEntry]] = {}
    for known_at, day, card in verdicts:
        _day_cases(cases, day).close(card, known_at)
        entries.setdefault(day, []).append(closed_entry(card, known_at))
    return entries


def _day_cases(cases: MutableMapping[int, DayCases], day: int) -> DayCases:
    """``cases[day]``, started empty when missing."""
    day_cases = cases.get(day)
    if day_cases is None:
        day_cases = cases[day] = DayCases()
    return day_cases


def case_days(day: int, lookback_days: int = CASE_LOOKBACK_DAYS) -> range:
    """The UTC days whose cases a transaction of ``day`` may join: the look-back days and its own."""
    return range(day - lookback_days, day + 1)


def case_open(cases: Mapping[int, DayCases], day: int, card: int, t: float,
              lookback_days: int = CASE_LOOKBACK_DAYS) -> bool:
    """Whether ``card`` has a case open at event time ``t`` (epoch s, on UTC ``day``): its latest opening ``o`` on
    one of :func:`case_days`, and no verdict in ``(o, t]`` in their logs (a verdict on any of the case's
    transactions closes it)."""
    days = [c for d in case_days(day, lookback_days) if (c := cases.get(d)) is not None]
    opens = [c.last_open[card] for c in days if card in c.last_open]
    if not opens:
        return False
    o = max(opens)
    return not any(o < k <= t for c in days for k in c.verdicts.get(card, ()))


def _admit(cases: MutableMapping[int, DayCases], day: int, card: int, t: float, cases_per_day: int | None,
           entries: dict[int, list[LogEntry]], lookback_days: int = CASE_LOOKBACK_DAYS) -> bool:
    """Whether a REVIEW of ``card`` at event time ``t`` stands: it joins the card's open case, or opens one while
    the day has opened fewer than ``cases_per_day`` (None: no limit), logged in ``entries``."""
    day_cases = _day_cases(cases, day)
    if case_open(cases, day, card, t, lookback_days):
        return True
    if cases_per_day is not None and day_cases.opened >= cases_per_day:
        return False
    day_cases.open(card, t)
    entries.setdefault(day, []).append(opened_entry(card, t))
    return True


def case_logs(reviews: Iterable[tuple[float, int]], verdicts: Iterable[tuple[float, int, int]]
              ) -> dict[int, list[LogEntry]]:
    """The logs a worker writes for these REVIEW decisions, each (event time epoch s, card), and analysts'
    verdicts (see :func:`record_verdicts`), by UTC day: the verdicts, then each REVIEW that opened a case (to
    rebuild the state from the decisions, which already hold the budget's outcome)."""
    cases: dict[int, DayCases] = {}
    entries = record_verdicts(cases, verdicts)
    for t, card in sorted(reviews):
        _admit(cases, event_day(t), card, t, None, entries)
    return entries


def apply_review_budget(result: CascadeResult, timestamps_s: np.ndarray, cards: np.ndarray,
                        cases: MutableMapping[int, DayCases], cases_per_day: int,
                        verdicts: Sequence[tuple[float, int, int]] = (),
                        lookback_days: int = CASE_LOOKBACK_DAYS) -> Budgeted:
    """``result`` with the REVIEWs past the day's budget turned into ALLOW; ``cases`` updated with the verdicts and
    the cases opened.

    Parameters
    ----------
    result : the cascade's output, rows in event-time order.
    timestamps_s, cards : each row's event time (epoch s) and card (customer id).
    cases : UTC day -> that day's cases before these rows (a day missing starts empty).
    cases_per_day : the budget (cases a day); 0 or less: no budget, nothing changes.
    verdicts : analysts' verdicts that came with these rows (see :func:`record_verdicts`).
    lookback_days : days before a row's day whose open cases it may join (0: a case lasts its day at most, for an
        open loop where no analyst ever closes one); ``cases`` must hold them.
    """
    if cases_per_day <= 0:
        return Budgeted(result, {}, 0)
    entries = record_verdicts(cases, verdicts)
    review = np.flatnonzero(np.asarray(result.decision) == Decision.REVIEW)
    over: list[int] = []
    days = event_days(np.asarray(timestamps_s)[review]).tolist()
    times = np.asarray(timestamps_s, dtype=np.float64)[review].tolist()
    for row, t, day, card in zip(review.tolist(), times, days, np.asarray(cards)[review].tolist()):
        if not _admit(cases, day, card, t, cases_per_day, entries, lookback_days):
            over.append(row)
    if not over:
        return Budgeted(result, entries, 0)
    decision = np.array(result.decision, copy=True)
    decision[over] = Decision.ALLOW
    reasons = list(result.reasons)
    for i in over:
        reasons[i] = (REASON_REVIEW_BUDGET, *reasons[i])
    return Budgeted(replace(result, decision=decision, reasons=reasons), entries, len(over))
