"""PSI against training reference histograms: zero for the same distribution, large for a shifted one, over a
sliding window of micro-batches."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fraudstream.detectors.drift import (
    ANOMALY_SCORE,
    LIGHT_SCORE,
    DriftWindow,
    ReferenceHistogram,
    load_reference,
    psi,
    reference_histogram,
    reference_histograms,
    watched_signals,
)


def test_reference_bins_hold_equal_shares_of_continuous_values() -> None:
    values = np.random.default_rng(0).normal(size=10_000)
    histogram = reference_histogram(values, bins=10)
    assert histogram.edges.size == 9
    assert histogram.shares == pytest.approx(np.full(10, 0.1), abs=1e-3)
    assert histogram.counts(values).sum() == values.size


def test_ties_merge_bins_and_nan_is_not_counted() -> None:
    values = np.array([0.0] * 900 + [1.0] * 100 + [np.nan] * 50)
    histogram = reference_histogram(values, bins=10)
    assert histogram.edges.tolist() == [0.0]
    assert histogram.shares.tolist() == [0.9, 0.1]
    assert histogram.counts(np.array([0.0, 0.5, 1.0, 2.0, np.nan])).tolist() == [1, 3]


def test_psi_by_hand() -> None:
    # live 0.5 / 0.5 against reference 0.25 / 0.75: 0.25 ln 2 - 0.25 ln(2/3)
    assert psi(np.array([0.25, 0.75]), np.array([50, 50])) == pytest.approx(
        0.25 * math.log(2) + (0.5 - 0.75) * math.log(0.5 / 0.75))
    assert math.isnan(psi(np.array([0.5, 0.5]), np.array([0, 0])))
    # an empty live bin is floored, not infinite
    assert math.isfinite(psi(np.array([0.5, 0.5]), np.array([100, 0])))


def test_same_distribution_is_stable_and_a_shift_is_significant() -> None:
    rng = np.random.default_rng(1)
    reference = reference_histogram(rng.beta(0.5, 5.0, 50_000))
    same = psi(reference.shares, reference.counts(rng.beta(0.5, 5.0, 20_000)))
    shifted = psi(reference.shares, reference.counts(rng.beta(1.5, 4.0, 20_000)))
    assert same < 0.01
    assert shifted > 0.2


def test_window_drops_the_oldest_batches() -> None:
    rng = np.random.default_rng(2)
    reference = {LIGHT_SCORE: reference_histogram(rng.uniform(size=10_000))}
    window = DriftWindow(reference, window_events=1_000, min_events=500)
    window.add({LIGHT_SCORE: rng.uniform(size=400)})
    assert math.isnan(window.psi()[LIGHT_SCORE])  # fewer than min_events
    for _ in range(5):
        window.add({LIGHT_SCORE: rng.uniform(size=400)})
    assert window.events < 1_400
    assert window.psi()[LIGHT_SCORE] < 0.05
    for _ in range(3):  # the window now holds only shifted traffic
        window.add({LIGHT_SCORE: rng.uniform(0.9, 1.0, size=400)})
    assert window.psi()[LIGHT_SCORE] > 1.0
    assert window._totals[LIGHT_SCORE].sum() == window.events


def test_stored_reference_round_trips_and_rejects_nonsense() -> None:
    rng = np.random.default_rng(3)
    X = np.column_stack([rng.gamma(2.0, 30.0, 2_000), rng.poisson(3, 2_000)])
    signals = watched_signals(rng.uniform(size=2_000), rng.uniform(size=2_000), X,
                               ["TX_AMOUNT", "CUSTOMER_ID_NB_TX_1DAY_WINDOW"])
    stored = reference_histograms(signals)
    loaded = load_reference(stored)
    assert set(loaded) == {LIGHT_SCORE, ANOMALY_SCORE, "TX_AMOUNT", "CUSTOMER_ID_NB_TX_1DAY_WINDOW"}
    assert loaded["TX_AMOUNT"].shares.sum() == pytest.approx(1.0)
    assert load_reference(None) == {}
    with pytest.raises(ValueError, match="not a reference histogram"):
        ReferenceHistogram.from_dict({"edges": [1.0, 0.5], "shares": [0.3, 0.3, 0.4]})
