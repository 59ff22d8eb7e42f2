"""A card against its own history: the compiled per-event reductions shared by the batch and incremental paths.

Both executions call :func:`card_novelty` on the same rows (the card's transactions at strictly earlier times in
``(t - history_days, t)``, sorted by (timestamp, id)), so they give the same values bit for bit.  See
``definition.FEATURE_DOCS`` for ``CUSTOMER_AMOUNT_ZSCORE``, ``CUSTOMER_HOUR_SHARE`` and ``CUSTOMER_NB_SAME_AMOUNT``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fraudstream.detectors.features.definition import AMOUNT_ZSCORE_MIN_STD, DAY_S, HOUR_BAND_H, HOUR_S


@njit(cache=True, nogil=True)
def hour_of_day(t):  # pragma: no cover - compiled
    """UTC hour (0..23) of an epoch time (s), from whole seconds as in ``calendar.night_flags``."""
    seconds = np.floor(t)
    return np.floor((seconds - np.floor(seconds / DAY_S) * DAY_S) / HOUR_S)


@njit(cache=True, nogil=True)
def card_novelty(times, amounts, lo, hi, t, amount, out, row, column):  # pragma: no cover - compiled
    """Write the amount z-score, the hour share and the same-amount count of one event into ``out[row, column:]``.

    ``times[lo:hi]`` and ``amounts[lo:hi]`` are the card's earlier transactions of the history window.
    """
    n = hi - lo
    zscore = 0.0
    if n >= 2:
        total = 0.0
        for k in range(lo, hi):
            total += amounts[k]
        mean = total / n
        spread = 0.0
        for k in range(lo, hi):
            spread += (amounts[k] - mean) ** 2
        zscore = (amount - mean) / max(np.sqrt(spread / n), AMOUNT_ZSCORE_MIN_STD)
    share = 1.0
    same = 0
    if n:
        hour = hour_of_day(t)
        near = 0
        for k in range(lo, hi):
            gap = abs(hour_of_day(times[k]) - hour)
            if min(gap, 24.0 - gap) <= HOUR_BAND_H:
                near += 1
            if amounts[k] == amount:
                same += 1
        share = near / n
    out[row, column] = zscore
    out[row, column + 1] = share
    out[row, column + 2] = same


@njit(cache=True, nogil=True)
def card_novelty_many(times, amounts, lo, hi, t, amount, out, column):  # pragma: no cover - compiled
    """:func:`card_novelty` for every row ``i`` on ``[lo[i], hi[i])`` (the batch path)."""
    for i in range(t.shape[0]):
        card_novelty(times, amounts, lo[i], hi[i], t[i], amount[i], out, i, column)
