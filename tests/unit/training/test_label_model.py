"""Chargeback delays: parsing, bounds, determinism; only frauds get a chargeback."""

import numpy as np
import pytest

from fraudstream.training.label_model import ChargebackDelay, LabelModelError, chargeback_known_at

DAY = 86_400.0


def test_delay_syntax_fixed_uniform_gamma():
    assert ChargebackDelay.parse("7d") == ChargebackDelay("fixed", 7 * DAY, 7 * DAY)
    assert ChargebackDelay.parse("3d..10d") == ChargebackDelay("uniform", 3 * DAY, 10 * DAY)
    gamma = ChargebackDelay.parse("gamma:7d,2d")
    assert (gamma.kind, gamma.a_s, gamma.b_s, gamma.max_s) == ("gamma", 7 * DAY, 2 * DAY, float("inf"))
    assert ChargebackDelay.parse("12h").describe() == "fixed 0.5 d"
    for bad in ("soon", "10d..3d", "gamma:7d", "gamma:0d,1d"):
        with pytest.raises(LabelModelError):
            ChargebackDelay.parse(bad)


def test_only_frauds_get_a_chargeback_within_the_distribution():
    t = np.arange(1000, dtype=float) * 60
    fraud = (np.arange(1000) % 7 == 0).astype(int)
    fixed = chargeback_known_at(t, fraud, ChargebackDelay.parse("7d"))
    assert np.isnan(fixed[fraud == 0]).all()
    assert np.array_equal(fixed[fraud == 1], t[fraud == 1] + 7 * DAY)
    spread = chargeback_known_at(t, fraud, ChargebackDelay.parse("3d..10d"), seed=4)
    delays = spread[fraud == 1] - t[fraud == 1]
    assert delays.min() >= 3 * DAY and delays.max() <= 10 * DAY and delays.std() > DAY
    again = chargeback_known_at(t, fraud, ChargebackDelay.parse("3d..10d"), seed=4)
    assert np.array_equal(spread, again, equal_nan=True)
    gamma = chargeback_known_at(t, fraud, ChargebackDelay.parse("gamma:7d,2d"), seed=1)[fraud == 1] - t[fraud == 1]
    assert abs(gamma.mean() - 7 * DAY) < DAY and (gamma > 0).all()
