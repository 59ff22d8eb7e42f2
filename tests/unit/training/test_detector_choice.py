"""The anomaly detector is chosen on the frauds the light model misses, not on those it already finds."""

import numpy as np
import pytest

from fraudstream.training.detector_choice import added_value, added_value_criterion, missed_by_light, ranking_key


def scenario(seed=0, n=20_000):
    """Frauds of kind A the light model sees; kind B it does not.  Detector 'echo' finds A, 'novel' finds B."""
    rng = np.random.default_rng(seed)
    kind = rng.choice([0, 1, 2], size=n, p=[0.97, 0.02, 0.01])  # legit, kind A, kind B
    y = (kind > 0).astype(np.int8)
    light = rng.beta(1, 30, n)
    light[kind == 1] = rng.uniform(0.5, 1.0, (kind == 1).sum())
    echo = rng.beta(2, 5, n)
    echo[kind == 1] = rng.uniform(0.9, 1.0, (kind == 1).sum())
    novel = rng.beta(2, 5, n)
    novel[kind == 2] = rng.uniform(0.95, 1.0, (kind == 2).sum())
    return light, y, kind, echo, novel


def test_missed_frauds_are_those_below_the_light_flag_threshold():
    light, y, kind, _, _ = scenario()
    unflagged, threshold = missed_by_light(light, y, 0.01)
    assert np.mean(light[y == 0] >= threshold) == pytest.approx(0.01, abs=0.002)
    assert (unflagged & (kind == 2)).sum() >= 0.95 * (kind == 2).sum()  # kind B looks legitimate to the light model
    assert (unflagged & (kind == 1)).sum() == 0


def test_the_detector_that_adds_wins_although_it_repeats_less():
    from sklearn.metrics import average_precision_score

    light, y, _, echo, novel = scenario()
    assert average_precision_score(y, echo) > average_precision_score(y, novel)  # plain AP prefers the echo
    criterion = added_value_criterion(light, y, 0.01)
    figures = {name: {**criterion(s), "average_precision": average_precision_score(y, s)}
               for name, s in (("echo", echo), ("novel", novel))}
    assert figures["novel"]["added_ap"] > 0.9 > 0.2 > figures["echo"]["added_ap"]
    assert figures["novel"]["added_recall"] > 0.9
    assert max(figures, key=lambda m: ranking_key(figures[m])) == "novel"


def test_no_missed_fraud_leaves_plain_ap_to_decide():
    y = np.array([0, 0, 1, 1])
    out = added_value(np.array([0.1, 0.2, 0.3, 0.4]), y, np.array([True, True, False, False]))
    assert np.isnan(out["added_ap"]) and out["missed_frauds"] == 0
    assert ranking_key({**out, "average_precision": 0.7}) == (-1.0, -1.0, 0.7)
