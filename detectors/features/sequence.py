"""A card's recent sequence: its last few transactions, one by one, for the heavy stage.

The light model and the anomaly detector see a card's history through window counts and means; the heavy model,
which only scores the ambiguous rows, also sees the card's last ``sequence_length`` earlier transactions each on
its own: how large it was against the card's usual amount, how long ago, whether at this terminal, how far its
hour of day is from this one's.  A compromised card shows there as a recent large charge that the 30-day means
dilute.  Both executions call :func:`card_sequence` on the same rows (the card's transactions at strictly earlier
times in ``(t - history_days, t)``, sorted by (timestamp, id)), so they give the same values bit for bit.  See
``definition.FEATURE_DOCS`` for each value.
"""

from __future__ import annotations

from numba import njit

from fraudstream.detectors.features.definition import (
    AMOUNT_RATIO_MIN_MEAN,
    SEQUENCE_HIGH_AMOUNT_RATIO,
    SEQUENCE_PARTS,
)
from fraudstream.detectors.features.novelty import hour_of_day

#: Values written per earlier transaction, in ``SEQUENCE_PARTS`` order (amount ratio, gap, same terminal, hour gap).
PARTS = len(SEQUENCE_PARTS)


@njit(cache=True, nogil=True)
def card_sequence(times, amounts, terminals, lo, hi, t, terminal, history_s, length, out, row,
                  column):  # pragma: no cover - compiled
    """Write the sequence features of one event into ``out[row, column:]``.

    ``times[lo:hi]``, ``amounts[lo:hi]`` and ``terminals[lo:hi]`` are the card's earlier transactions of the
    history window, oldest first; ``length`` is how many of the latest ones are described (:data:`PARTS` values
    each, latest first), followed by the largest of their amount ratios and how many of them exceed
    ``SEQUENCE_HIGH_AMOUNT_RATIO``.
    """
    n = hi - lo
    mean = 0.0
    if n:
        total = 0.0
        for k in range(lo, hi):
            total += amounts[k]
        mean = max(total / n, AMOUNT_RATIO_MIN_MEAN)
    hour = hour_of_day(t)
    largest = 0.0
    high = 0
    for j in range(length):
        base = column + PARTS * j
        k = hi - 1 - j
        if k < lo:
            out[row, base] = 0.0
            out[row, base + 1] = history_s
            out[row, base + 2] = 0.0
            out[row, base + 3] = -1.0
            continue
        ratio = amounts[k] / mean
        gap = abs(hour_of_day(times[k]) - hour)
        out[row, base] = ratio
        out[row, base + 1] = t - times[k]
        out[row, base + 2] = 1.0 if terminals[k] == terminal else 0.0
        out[row, base + 3] = min(gap, 24.0 - gap)
        largest = max(largest, ratio)
        if ratio > SEQUENCE_HIGH_AMOUNT_RATIO:
            high += 1
    out[row, column + PARTS * length] = largest
    out[row, column + PARTS * length + 1] = high


@njit(cache=True, nogil=True)
def card_sequence_many(times, amounts, terminals, lo, hi, t, terminal, history_s, length, out,
                       column):  # pragma: no cover - compiled
    """:func:`card_sequence` for every row ``i`` on ``[lo[i], hi[i])`` (the batch path)."""
    for i in range(t.shape[0]):
        card_sequence(times, amounts, terminals, lo[i], hi[i], t[i], terminal[i], history_s, length, out, i, column)
