import numpy as np
import pytest

from fraudstream.detectors.features.definition import ANOMALY_FEATURES, FEATURE_NAMES
from fraudstream.detectors.models.anomaly import AnomalyModel
from fraudstream.training.train import anomaly_columns


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
