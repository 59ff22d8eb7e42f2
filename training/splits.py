"""Time-based train / validation splits with a gap the size of the label delay.

Layout on the time axis (whole UTC days, half-open intervals)::

    [train_start, train_end) | gap (gap_days) | [valid_start, valid_end)

A training transaction's label is known ``label_delay`` after it; with ``gap_days >= label_delay_days`` every
training label is known by ``valid_start``, so a model trained on the training period could really have been
trained by then, and no validation transaction (nor its label) is seen in training.

The evaluation's test set of a fold follows the handbook (:func:`known_compromised_test_rows`): cards already
known to be compromised when a test day starts are left out of that day, since they are the easy ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraudstream.detectors.schema import TX_DATETIME

ONE_DAY = pd.Timedelta(days=1)


class SplitError(ValueError):
    """The data cannot hold the requested periods; the message gives the dates involved."""


@dataclass(frozen=True)
class TimeSplit:
    """Period boundaries (naive UTC timestamps at midnight; each interval is half-open)."""

    train_start: pd.Timestamp
    train_end: pd.Timestamp
    valid_start: pd.Timestamp
    valid_end: pd.Timestamp

    @property
    def gap_days(self) -> int:
        return int((self.valid_start - self.train_end) / ONE_DAY)

    def describe(self) -> dict[str, str]:
        return {
            "train": f"{self.train_start.date()} .. {(self.train_end - ONE_DAY).date()}",
            "gap_days": str(self.gap_days),
            "valid": f"{self.valid_start.date()} .. {(self.valid_end - ONE_DAY).date()}",
        }


def make_split(
    first_day: pd.Timestamp,
    end: pd.Timestamp,
    valid_days: int,
    gap_days: int,
    train_days: int | None = None,
) -> TimeSplit:
    """Split ``[first_day, end)``: validation is the last ``valid_days`` days, then the gap, then training.

    ``train_days`` limits training to that many days just before the gap (None: everything from ``first_day``).
    """
    if valid_days < 1:
        raise SplitError(f"valid_days must be >= 1, got {valid_days}")
    if gap_days < 0:
        raise SplitError(f"gap_days must be >= 0, got {gap_days}")
    first_day, end = pd.Timestamp(first_day).normalize(), pd.Timestamp(end).normalize()
    valid_start = end - valid_days * ONE_DAY
    train_end = valid_start - gap_days * ONE_DAY
    train_start = first_day if train_days is None else max(first_day, train_end - train_days * ONE_DAY)
    if train_end <= train_start:
        raise SplitError(
            f"no training days: data {first_day.date()} .. {(end - ONE_DAY).date()} minus {valid_days} validation "
            f"and {gap_days} gap days leaves nothing before {train_end.date()}"
        )
    return TimeSplit(train_start, train_end, valid_start, end)


def split_frame(frame: pd.DataFrame, split: TimeSplit) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training and validation rows of ``frame`` (by ``TX_DATETIME``); gap rows belong to neither."""
    ts = frame[TX_DATETIME]
    train = frame[(ts >= split.train_start) & (ts < split.train_end)]
    valid = frame[(ts >= split.valid_start) & (ts < split.valid_end)]
    return train, valid


# ---- the handbook's test set ---------------------------------------------------------------------------------

#: Evaluation protocols: ``handbook`` removes the known-compromised cards day by day (the handbook's
#: ``get_train_delay_test_set``); ``all-cards`` scores every transaction of the test days.
PROTOCOL_HANDBOOK = "handbook"
PROTOCOL_ALL_CARDS = "all-cards"
PROTOCOLS = (PROTOCOL_HANDBOOK, PROTOCOL_ALL_CARDS)


def known_compromised_test_rows(day: np.ndarray, card: np.ndarray, fraud: np.ndarray, train_first_day: int,
                                train_days: int, delay_days: int, test_days: int) -> np.ndarray:
    """Which rows form the handbook's test set of one fold (a boolean mask over the given rows).

    The known-compromised set starts as every card with a fraud in the training days
    ``[s, s + train_days)``.  For test day ``k`` (day ``s + train_days + delay_days + k``) the cards with a fraud on
    delay day ``s + train_days + k - 1`` join the set (their labels are known by then), and only that test day's
    transactions of cards outside the set are kept.  Rows outside the test days are never kept.

    Parameters
    ----------
    day : integer day of each transaction (e.g. days since the epoch).
    card : card (customer id) of each transaction.
    fraud : 0/1 label of each transaction.
    train_first_day : day number ``s`` of the first training day.
    train_days, delay_days, test_days : period lengths (days).
    """
    day, card = np.asarray(day, dtype=np.int64), np.asarray(card)
    fraud = np.asarray(fraud).astype(bool)
    if not day.shape == card.shape == fraud.shape:
        raise ValueError(f"day, card and fraud differ in shape: {day.shape}, {card.shape}, {fraud.shape}")
    s = int(train_first_day)
    in_train = (day >= s) & (day < s + train_days)
    known = set(np.unique(card[in_train & fraud]).tolist())
    keep = np.zeros(day.shape[0], dtype=bool)
    for k in range(test_days):
        delay_day = s + train_days + k - 1
        known.update(np.unique(card[(day == delay_day) & fraud]).tolist())
        today = day == s + train_days + delay_days + k
        keep |= today & ~np.isin(card, np.fromiter(known, dtype=card.dtype, count=len(known)))
    return keep


#: Days before a test day whose frauds make a card known-compromised on it in a period test set: days
#: ``D - 14 .. D - 8``, the handbook's known set on the first day of its test week (labels known by a 7-day delay).
PERIOD_KNOWN_FIRST_DAYS_BACK, PERIOD_KNOWN_LAST_DAYS_BACK = 14, 8


def known_compromised_period_rows(day: np.ndarray, card: np.ndarray, fraud: np.ndarray,
                                  first_test_day: int) -> np.ndarray:
    """The handbook-style test set of a whole period (a backtest): a boolean mask over the given rows.

    Every day ``D >= first_test_day`` keeps its transactions whose card had no fraud on days ``D - 14 .. D - 8``
    (see :data:`PERIOD_KNOWN_FIRST_DAYS_BACK`); rows before ``first_test_day`` only tell which cards are known.
    """
    day, card = np.asarray(day, dtype=np.int64), np.asarray(card)
    fraud = np.asarray(fraud).astype(bool)
    if not day.shape == card.shape == fraud.shape:
        raise ValueError(f"day, card and fraud differ in shape: {day.shape}, {card.shape}, {fraud.shape}")
    keep = np.zeros(day.shape[0], dtype=bool)
    fraud_day, fraud_card = day[fraud], card[fraud]
    for d in np.unique(day[day >= first_test_day]).tolist():
        window = (fraud_day >= d - PERIOD_KNOWN_FIRST_DAYS_BACK) & (fraud_day <= d - PERIOD_KNOWN_LAST_DAYS_BACK)
        today = np.flatnonzero(day == d)
        keep[today] = ~np.isin(card[today], fraud_card[window])
    return keep
