import numpy as np
import pytest

from fraudstream.detectors.features.definition import ANOMALY_FEATURE_SIDES, ANOMALY_FEATURES, FEATURE_NAMES
from fraudstream.detectors.models.anomaly import AnomalyModel
from fraudstream.training.train import anomaly_columns, anomaly_sides


@pytest.mark.parametrize("method", ["ECOD", "IForest"])
def test_columns_select_the_detector_inputs(method):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 6))
    y = (rng.random(600) < 0.05).astype(int)
    cols = (1, 4)
    on_subset = AnomalyModel(method, max_train_rows=400, seed=1, columns=cols).fit(X, y)
    on_sliced = AnomalyModel(method, max_train_rows=400, seed=1).fit(X[:, list(cols)], y)
    probe = rng.normal(size=(50, 6))
    np.testing.assert_allclose(on_subset.score(probe), on_sliced.score(probe[:, list(cols)]))
    # columns it does not look at do not move its score
    shifted = probe.copy()
    shifted[:, [0, 2, 3, 5]] += 100.0
    np.testing.assert_allclose(on_subset.score(probe), on_subset.score(shifted))


def test_anomaly_columns_name_behavioural_features():
    idx = anomaly_columns(FEATURE_NAMES)
    assert [FEATURE_NAMES[i] for i in idx] == ANOMALY_FEATURES
    assert not any(name.startswith("TERMINAL_ID_RISK") for name in ANOMALY_FEATURES)


@pytest.mark.parametrize("method", ["ECOD", "COPOD"])
def test_sides_count_a_column_anomalous_in_its_own_tail_only(method):
    rng = np.random.default_rng(5)
    counts = rng.poisson(3.0, size=(2000, 1)).astype(float)
    X = np.hstack([counts, rng.normal(size=(2000, 1))])
    both = AnomalyModel(method, max_train_rows=2000, columns=(0, 1)).fit(X)
    right = AnomalyModel(method, max_train_rows=2000, columns=(0, 1), sides=("right", "both")).fit(X)
    low, high = np.array([[0.0, 0.0]]), np.array([[12.0, 0.0]])
    # a count of 0 is in the left tail: anomalous to both tails, not when only large counts are
    assert both.raw_score(low)[0] > right.raw_score(low)[0]
    assert right.raw_score(high)[0] == pytest.approx(both.raw_score(high)[0])
    assert right.score(high)[0] > right.score(low)[0]
    left = AnomalyModel(method, max_train_rows=2000, columns=(0, 1), sides=("left", "both")).fit(X)
    assert left.score(low)[0] > left.score(high)[0]


def test_sides_are_checked():
    with pytest.raises(ValueError, match="expected each of"):
        AnomalyModel("ECOD", columns=(0,), sides=("up",))
    with pytest.raises(ValueError, match="1 given for 2 columns"):
        AnomalyModel("ECOD", columns=(0, 1), sides=("right",))


def test_every_anomaly_feature_has_a_side():
    assert sorted(ANOMALY_FEATURE_SIDES) == sorted(ANOMALY_FEATURES)
    idx = anomaly_columns(FEATURE_NAMES)
    assert anomaly_sides(FEATURE_NAMES) == tuple(ANOMALY_FEATURE_SIDES[FEATURE_NAMES[i]] for i in idx)
