"""When the truth becomes known in a backtest: chargebacks after a delay (fixed or drawn from a distribution).

Every fraudulent transaction yields one chargeback, a fraud label with ``known_at = t + delay``; legitimate is the
default once nothing arrived, so legitimate transactions yield no event (as the live chargeback feed).  Analyst
verdicts, the other source, come from :mod:`fraudstream.training.analysts`.

Training on these arrival times (:func:`with_fraud_known_at`): the labels a backtest sent, with their
``known_at``, become the ``TX_FRAUD_KNOWN_AT`` column of the training frame, so that features which count a label
as soon as it is known learn what they mean with the live system's arrival times, analysts included.

Delay syntax (:meth:`ChargebackDelay.parse`): ``7d`` (fixed), ``3d..10d`` (uniform between the two), or
``gamma:7d,2d`` (gamma distribution with that mean and standard deviation).  Units ``d``, ``h``, ``m``, ``s``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraudstream.detectors.features.definition import DAY_S
from fraudstream.detectors.schema import TRANSACTION_ID, TX_DATETIME, TX_FRAUD, datetime_to_epoch_seconds

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhms]?)\s*$", re.IGNORECASE)
_UNIT_S = {"d": DAY_S, "h": 3_600.0, "m": 60.0, "s": 1.0, "": 1.0}
#: Kinds of delay distribution.
FIXED, UNIFORM, GAMMA = "fixed", "uniform", "gamma"


class LabelModelError(ValueError):
    """A delay that cannot be parsed or used; the message quotes it."""


def parse_duration_s(text: str) -> float:
    """Seconds from ``7d``, ``12h``, ``30m``, ``45s`` or a plain number of seconds."""
    match = _DURATION_RE.match(str(text))
    if not match:
        raise LabelModelError(f"not a duration: {text!r} (a number with unit d, h, m or s, e.g. 7d)")
    return float(match.group(1)) * _UNIT_S[match.group(2).lower()]


@dataclass(frozen=True)
class ChargebackDelay:
    """Distribution of the delay (s) from a fraudulent transaction to its chargeback.

    Parameters
    ----------
    kind : :data:`FIXED`, :data:`UNIFORM` or :data:`GAMMA`.
    a_s, b_s : fixed: the delay (both equal); uniform: the bounds; gamma: mean and standard deviation (s).
    """

    kind: str
    a_s: float
    b_s: float

    def __post_init__(self) -> None:
        if self.kind not in (FIXED, UNIFORM, GAMMA):
            raise LabelModelError(f"unknown delay kind {self.kind!r}")
        if self.a_s < 0 or self.b_s < 0 or (self.kind == UNIFORM and self.b_s < self.a_s):
            raise LabelModelError(f"bad delay bounds {self.a_s} s, {self.b_s} s for {self.kind}")
        if self.kind == GAMMA and (self.a_s <= 0 or self.b_s <= 0):
            raise LabelModelError("gamma delay: mean and standard deviation must be > 0")

    @classmethod
    def parse(cls, text: str) -> ChargebackDelay:
        """``7d``, ``3d..10d`` or ``gamma:7d,2d`` (see the module docstring)."""
        raw = str(text).strip()
        if raw.lower().startswith("gamma:"):
            parts = raw[6:].split(",")
            if len(parts) != 2:
                raise LabelModelError(f"gamma delay: expected gamma:MEAN,STD, got {text!r}")
            return cls(GAMMA, parse_duration_s(parts[0]), parse_duration_s(parts[1]))
        if ".." in raw:
            low, high = raw.split("..", 1)
            return cls(UNIFORM, parse_duration_s(low), parse_duration_s(high))
        delay = parse_duration_s(raw)
        return cls(FIXED, delay, delay)

    @property
    def max_s(self) -> float:
        """Largest possible delay (s); ``inf`` for the gamma distribution."""
        return float("inf") if self.kind == GAMMA else self.b_s

    def describe(self) -> str:
        days = lambda s: f"{s / DAY_S:g} d"  # noqa: E731
        if self.kind == FIXED:
            return f"fixed {days(self.a_s)}"
        if self.kind == UNIFORM:
            return f"uniform {days(self.a_s)}..{days(self.b_s)}"
        return f"gamma mean {days(self.a_s)}, std {days(self.b_s)}"

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` delays (s)."""
        if self.kind == FIXED:
            return np.full(n, self.a_s)
        if self.kind == UNIFORM:
            return rng.uniform(self.a_s, self.b_s, n)
        shape = (self.a_s / self.b_s) ** 2
        return rng.gamma(shape, self.a_s / shape, n)


def chargeback_known_at(tx_time_s: np.ndarray, fraud: np.ndarray, delay: ChargebackDelay,
                        seed: int = 0) -> np.ndarray:
    """When each transaction's chargeback is known (epoch s): ``t + delay`` for frauds, ``nan`` for the rest.

    The draws depend only on the seed and the row order, so the same input gives the same times.
    """
    t = np.asarray(tx_time_s, dtype=np.float64)
    is_fraud = np.asarray(fraud).astype(bool)
    known_at = np.full(t.shape[0], np.nan)
    rows = np.flatnonzero(is_fraud)
    known_at[rows] = t[rows] + delay.sample(rows.size, np.random.default_rng(seed))
    return known_at


def fraud_known_at(frame: pd.DataFrame, labels: pd.DataFrame, default_delay_s: float) -> np.ndarray:
    """When each fraud of ``frame`` became known (epoch s, row order; NaN for the rows that are not fraud).

    ``labels`` has ``TRANSACTION_ID``, ``TX_FRAUD`` and ``known_at`` (datetime, naive UTC), e.g. the labels a
    backtest sent (``fraudstream backtest --labels-out``: its chargebacks and analyst verdicts) or a
    ``fraudstream labels export`` file.  A fraud's time is its earliest fraud label, else (no such label) its
    transaction time plus ``default_delay_s``, the fixed delay of training without a label model.  This is the
    :data:`~fraudstream.detectors.features.batch.LABEL_KNOWN_AT` column the batch features count labels by.
    """
    fraud_labels = labels[labels[TX_FRAUD] == 1]
    first = fraud_labels.groupby(TRANSACTION_ID)["known_at"].min()
    t = datetime_to_epoch_seconds(frame[TX_DATETIME])
    known = frame[TRANSACTION_ID].map(first)
    known_s = np.where(known.notna(), datetime_to_epoch_seconds(known.fillna(frame[TX_DATETIME])), t + default_delay_s)
    is_fraud = frame[TX_FRAUD].fillna(0).to_numpy().astype(bool)
    return np.where(is_fraud, known_s, np.nan)


def with_fraud_known_at(frame: pd.DataFrame, labels: pd.DataFrame, default_delay_s: float) -> pd.DataFrame:
    """``frame`` with the :data:`~fraudstream.detectors.features.batch.LABEL_KNOWN_AT` column of
    :func:`fraud_known_at` (epoch s), so that training counts each label from when it was known."""
    from fraudstream.detectors.features.batch import LABEL_KNOWN_AT

    return frame.assign(**{LABEL_KNOWN_AT: fraud_known_at(frame, labels, default_delay_s)})
