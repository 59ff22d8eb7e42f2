"""Simulated analysts for the backtest: review cases per card, worked in priority order up to a daily capacity.

A **case is a card**: every REVIEW item of a card joins its open case (a burst of ten costs one case).  A case is
ready ``delay_s`` after it opened (and never before the end of the step that opened it).  Between two steps the
ready cases are worked in priority order (:func:`case_priority`: expected loss, the sum of risk x amount of its
items, raised with age) while the day has capacity left (``capacity_cards_per_day`` cases per UTC day); the
others wait, and a case not worked ``case_expiry_s`` after it opened expires (its items stay unlabelled until
their chargebacks).  Items a chargeback settled meanwhile (the worker resolves a pending review item when its
chargeback arrives) leave their case; a case left with none closes unworked.  A verdict, known from the step
boundary it is given at, gives every item of the case the file's label, flipped with probability
``error_rate``; a fraud verdict confirms the card.

Pure logic: no I/O; the randomness (analyst error) comes only from ``seed``.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, field

import numpy as np

from fraudstream.detectors.features.definition import DAY_S, HOUR_S

#: Default service level of a case (s) used by the age term of the priority.
DEFAULT_SLA_S = 4 * HOUR_S


def case_priority(expected_loss: np.ndarray, age_s: np.ndarray, sla_s: float = DEFAULT_SLA_S) -> np.ndarray:
    """Priority of cases (higher first): expected loss (currency units, at least 0.01) x 2 ** (age / ``sla_s``).

    The review workbench's order (``review_queue.cases.priority_key``, whose age doubling time is 4 h by
    default): a case one doubling time older weighs twice as much, so nothing starves.
    """
    loss = np.maximum(np.asarray(expected_loss, dtype=np.float64), 0.01)
    return loss * np.exp2(np.maximum(np.asarray(age_s, dtype=np.float64), 0.0) / sla_s)


@dataclass(frozen=True)
class AnalystSettings:
    """How the simulated analysts work.

    Parameters
    ----------
    capacity_cards_per_day : cases (cards) worked per UTC day.
    delay_s : time from a case's opening to its verdict when capacity allows (s).
    case_expiry_s : a case not worked this long after opening expires (s).
    sla_s : age doubling time of the priority (s), the review workbench's ``age_doubling_s``.
    error_rate : probability that a verdict contradicts the file's label.
    seed : seed of the analyst errors.
    """

    capacity_cards_per_day: int = 100
    delay_s: float = HOUR_S
    case_expiry_s: float = 7 * DAY_S
    sla_s: float = DEFAULT_SLA_S
    error_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.capacity_cards_per_day < 0:
            raise ValueError(f"capacity_cards_per_day must be >= 0, got {self.capacity_cards_per_day}")
        if self.delay_s < 0 or self.case_expiry_s <= 0 or self.sla_s <= 0:
            raise ValueError("delay_s must be >= 0; case_expiry_s and sla_s > 0")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be in [0, 1], got {self.error_rate}")


@dataclass(frozen=True)
class ReviewItem:
    """One REVIEW decision: the transaction, its risk and its true label (the file's)."""

    transaction_id: int
    card: int
    terminal_id: int
    tx_time_s: float
    risk: float
    amount: float
    fraud: bool


@dataclass(frozen=True)
class Verdict:
    """An analyst's label of one transaction, known from ``known_at_s`` (epoch s)."""

    transaction_id: int
    card: int
    terminal_id: int
    tx_time_s: float
    fraud: bool
    known_at_s: float
    case_opened_s: float


@dataclass
class _Case:
    card: int
    opened_s: float
    ready_s: float
    items: list[ReviewItem] = field(default_factory=list)

    @property
    def expected_loss(self) -> float:
        return sum(item.risk * item.amount for item in self.items)


@dataclass
class AnalystLog:
    """What the analysts did: cases opened / worked / expired / settled by chargeback per UTC day number, and
    the queue age of worked cases (s)."""

    opened_per_day: dict[int, int] = field(default_factory=dict)
    worked_per_day: dict[int, int] = field(default_factory=dict)
    expired_per_day: dict[int, int] = field(default_factory=dict)
    settled_per_day: dict[int, int] = field(default_factory=dict)
    queue_age_s: list[float] = field(default_factory=list)

    @staticmethod
    def _count(counts: dict[int, int], time_s: float) -> None:
        day = int(time_s // DAY_S)
        counts[day] = counts.get(day, 0) + 1


class SimulatedAnalysts:
    """The review queue and the analysts working it, advanced step by step in event time.

    Call :meth:`add` with the REVIEW items of a step, then :meth:`work` with the step's end time.
    """

    def __init__(self, settings: AnalystSettings) -> None:
        self.settings = settings
        self._cases: dict[int, _Case] = {}
        self._used: dict[int, int] = {}  # UTC day number -> cases worked
        self._rng = np.random.default_rng(settings.seed)
        self.log = AnalystLog()

    @property
    def pending_cases(self) -> int:
        return len(self._cases)

    def add(self, items: list[ReviewItem], step_end_s: float) -> None:
        """Queue the REVIEW items of the step ending at ``step_end_s``; a card's items join its open case."""
        for item in items:
            case = self._cases.get(item.card)
            if case is None:
                opened = item.tx_time_s
                case = self._cases[item.card] = _Case(item.card, opened, max(opened + self.settings.delay_s,
                                                                              step_end_s))
                AnalystLog._count(self.log.opened_per_day, opened)
            case.items.append(item)

    def next_event_s(self, now_s: float) -> float:
        """The next time after ``now_s`` at which a case can be worked (``inf`` when none is pending).

        That is the earliest ready time still ahead, or the start of the next day while ready cases wait for
        capacity.
        """
        ahead = [case.ready_s for case in self._cases.values() if case.ready_s > now_s]
        nxt = min(ahead, default=float("inf"))
        if len(ahead) < len(self._cases):  # some are ready and wait for the next day's capacity
            nxt = min(nxt, (now_s // DAY_S + 1) * DAY_S)
        return nxt

    def ready_items(self, now_s: float) -> list[int]:
        """Transaction ids of the items of the cases ready by ``now_s`` (to ask which are still pending)."""
        return [item.transaction_id for case in self._cases.values() if case.ready_s <= now_s
                for item in case.items]

    def work(self, now_s: float, settled: Set[int] = frozenset()) -> list[Verdict]:
        """Work the cases ready by ``now_s`` in priority order while the day's capacity lasts.

        Call it between two steps: the verdicts are known at ``now_s`` (a case is never worked inside the step
        that made it ready, so no verdict reaches back into transactions already decided; the queue age is
        rounded up to the step).  ``settled``: transaction ids whose review item is no longer pending (a
        chargeback resolved it); they leave their cases first.
        """
        s = self.settings
        for card in [c for c, case in self._cases.items() if now_s - case.opened_s > s.case_expiry_s]:
            AnalystLog._count(self.log.expired_per_day, self._cases.pop(card).opened_s + s.case_expiry_s)
        if settled:
            for case in list(self._cases.values()):
                case.items = [item for item in case.items if item.transaction_id not in settled]
                if not case.items:
                    AnalystLog._count(self.log.settled_per_day, now_s)
                    del self._cases[case.card]
        ready = [case for case in self._cases.values() if case.ready_s <= now_s]
        day = int(now_s // DAY_S)
        room = s.capacity_cards_per_day - self._used.get(day, 0)
        if not ready or room <= 0:
            return []
        priority = case_priority(np.array([c.expected_loss for c in ready]),
                                 np.array([now_s - c.opened_s for c in ready]), s.sla_s)
        order = np.lexsort((np.array([c.card for c in ready]), -priority))[:room].tolist()
        self._used[day] = self._used.get(day, 0) + len(order)
        verdicts: list[Verdict] = []
        for index in order:
            case = self._cases.pop(ready[index].card)
            flips = (self._rng.random(len(case.items)) < s.error_rate).tolist() if s.error_rate else \
                [False] * len(case.items)
            verdicts += [Verdict(item.transaction_id, item.card, item.terminal_id, item.tx_time_s,
                                 bool(item.fraud) != flip, now_s, case.opened_s)
                         for item, flip in zip(case.items, flips)]
            AnalystLog._count(self.log.worked_per_day, now_s)
            self.log.queue_age_s.append(now_s - case.opened_s)
        return verdicts
