"""Light, heavy and anomaly stages: fit, vectorized scores in [0, 1], row independence, persistence."""

import numpy as np
import pytest

from fraudstream.detectors.models.anomaly import ANOMALY_METHODS, AnomalyModel, select_anomaly_model
from fraudstream.detectors.models.heavy import HeavyModel, heavy_feature_names, heavy_inputs
from fraudstream.detectors.models.light import LightModel, ProbabilityCalibrator


def data(seed=0, n=4000, d=6):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(np.int8)
    X = rng.normal(size=(n, d))
    X[:, 0] += 3 * y  # one informative feature
    X[:, 1] = np.abs(X[:, 1]) * (1 + 4 * y)  # fraud is heavy-tailed here
    return X, y


NAMES = [f"F{i}" for i in range(6)]


@pytest.mark.parametrize("imbalance", ["none", "scale_pos_weight", "downsample"])
def test_light_model_learns_and_scores_the_whole_batch(imbalance):
    X, y = data()
    model = LightModel(n_estimators=20, max_depth=3, imbalance=imbalance, seed=1).fit(X, y, NAMES)
    raw = model.raw_score(X)
    assert raw.shape == (len(X),) and raw.min() >= 0 and raw.max() <= 1
    assert raw[y == 1].mean() > raw[y == 0].mean() + 0.3
    np.testing.assert_array_equal(model.raw_score(X[:7]), raw[:7])  # row-independent


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibration_brings_probabilities_near_observed_rates(method):
    X, y = data(seed=2)
    Xv, yv = data(seed=3)
    model = LightModel(n_estimators=20, max_depth=3, imbalance="downsample", negatives_per_positive=1.0,
                       calibration=method, seed=0).fit(X, y, NAMES)
    before = abs(model.raw_score(Xv).mean() - yv.mean())
    model.calibrate(Xv, yv)
    after = abs(model.score(Xv).mean() - yv.mean())
    assert after < before  # down-sampling inflates raw probabilities; calibration corrects them
    assert np.all(np.diff(model.calibrator_.transform(np.linspace(0, 1, 50))) >= -1e-12)  # monotone


def test_calibrator_round_trips():
    rng = np.random.default_rng(0)
    raw = rng.random(500)
    y = (rng.random(500) < raw).astype(int)
    for method in ("isotonic", "platt"):
        cal = ProbabilityCalibrator(method).fit(raw, y)
        again = ProbabilityCalibrator.from_dict(cal.to_dict())
        np.testing.assert_array_equal(again.transform(raw), cal.transform(raw))


def test_contributions_point_at_the_informative_feature(tmp_path):
    X, y = data()
    model = LightModel(n_estimators=20, max_depth=3, seed=0).fit(X, y, NAMES)
    contribs = model.contributions(X[y == 1][:20])
    assert contribs.shape == (20, 6)
    assert np.argmax(contribs.mean(axis=0)) in (0, 1)
    files = model.save(tmp_path, "light")
    assert all(p.exists() for p in files)
    again = LightModel.load(tmp_path, "light")
    np.testing.assert_array_equal(again.score(X), model.score(X))


def test_heavy_model_takes_the_stacked_inputs():
    X, y = data()
    light = LightModel(n_estimators=10, max_depth=3).fit(X, y, NAMES).raw_score(X)
    anomaly = np.random.default_rng(0).random(len(X))
    Z = heavy_inputs(X, light, anomaly)
    assert Z.shape == (len(X), 8)
    heavy = HeavyModel(n_estimators=30, max_depth=4).fit(Z, y, heavy_feature_names(NAMES))
    assert heavy.max_depth == 4 and heavy.subsample == 0.8
    assert heavy.score(Z)[y == 1].mean() > heavy.score(Z)[y == 0].mean()


def test_single_class_training_is_refused():
    X, _ = data()
    with pytest.raises(ValueError, match="single class"):
        LightModel(n_estimators=5).fit(X, np.zeros(len(X)))


@pytest.mark.parametrize("method", ANOMALY_METHODS)
def test_anomaly_score_is_an_empirical_cdf_and_row_independent(method):
    X, y = data()
    model = AnomalyModel(method, max_train_rows=1000, seed=0).fit(X, y)
    legit = model.score(X[y == 0])
    assert 0.0 <= legit.min() and legit.max() <= 1.0
    assert 0.35 < np.median(legit) < 0.65  # about uniform on legitimate traffic
    full = model.score(X)
    np.testing.assert_array_equal(model.score(X[:5]), full[:5])
    np.testing.assert_array_equal(model.score(X[5:6]), full[5:6])


@pytest.mark.parametrize("method", ["ECOD", "COPOD"])
def test_tail_methods_match_pyod_on_a_single_row(method):
    X, y = data()
    model = AnomalyModel(method, max_train_rows=500).fit(X, y)
    for i in range(3):
        expected = model.detector_.decision_function(X[i:i + 1])[0]
        assert model.raw_score(X[i:i + 1])[0] == pytest.approx(expected, rel=1e-9)


def test_anomaly_selection_reports_every_method_and_keeps_the_best():
    X, y = data()
    Xv, yv = data(seed=5)
    model, table = select_anomaly_model(X, y, Xv, yv, ("IForest", "HBOS"), max_train_rows=1000)
    assert set(table) == {"IForest", "HBOS"}
    assert table[model.method]["average_precision"] == max(t["average_precision"] for t in table.values())


def test_approximate_contributions_sum_to_the_margin_and_name_the_same_leading_features():
    X, y = data()
    model = LightModel(n_estimators=20, max_depth=3, seed=0).fit(X, y, NAMES)
    rows = X[y == 1][:50]
    exact = model.contributions(rows)
    approx = model.contributions(rows, approximate=True)
    assert approx.shape == exact.shape and not np.array_equal(approx, exact)
    np.testing.assert_allclose(approx.sum(axis=1), exact.sum(axis=1), rtol=0, atol=1e-4)  # same margin
    exact_top2 = np.argsort(-exact, axis=1)[:, :2]
    assert (exact_top2 == np.argmax(approx, axis=1)[:, None]).any(axis=1).mean() >= 0.95


def test_a_model_fitted_on_leading_columns_reads_only_those_of_a_wider_matrix():
    # the light model is fitted on the screening features and scores the cascade's matrix, sequence included
    X, y = data()
    model = LightModel(n_estimators=20, max_depth=3, seed=0).fit(X[:, :4], y, NAMES[:4])
    wider = np.column_stack([X, np.full(len(X), np.nan)])  # anything after the leading four is ignored
    for rows in (X[:50], X):  # the tree walker's batches and XGBoost's
        np.testing.assert_array_equal(model.raw_score(np.column_stack([rows, rows[:, :1] * 9])),
                                      model.raw_score(rows[:, :4]))
    np.testing.assert_array_equal(model.contributions(wider[:20], approximate=True),
                                  model.contributions(X[:20, :4], approximate=True))
    with pytest.raises(ValueError, match=">= 4"):
        model.raw_score(X[:, :3])
