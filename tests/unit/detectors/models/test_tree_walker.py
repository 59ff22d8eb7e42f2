"""The compiled tree walker gives XGBoost's probabilities, margins and approximate contributions."""

import json
import pickle

import numpy as np
import pytest
import xgboost as xgb

from fraudstream.detectors.models.heavy import HeavyModel
from fraudstream.detectors.models.light import WALKER_MAX_ROWS, LightModel
from fraudstream.detectors.models.tree_walker import TreeEnsemble

N_FEATURES = 30


def data(seed=0, n=4000, d=N_FEATURES):
    """Features on very different scales, a column of integers (ties on thresholds), 5% NaN; 4% positives."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 50.0, d)
    X[:, 2] = np.round(X[:, 2])
    signal = X[:, 0] / X[:, 0].std() + 0.5 * X[:, 1] / X[:, 1].std()
    y = (signal + rng.normal(size=n) > 2.5).astype(np.int8)
    X[rng.random(X.shape) < 0.05] = np.nan
    return X, y


def train(depth, trees, seed=0, **params):
    X, y = data(seed)
    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": depth, "eta": 0.1, "seed": seed,
              "nthread": 1, **params}
    return xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=trees)


def threshold_rows(booster, n, seed=0):
    """Rows whose values are split conditions of the model (exactly, or one float32 step either side), or NaN."""
    rng = np.random.default_rng(seed)
    model = json.loads(bytes(booster.save_raw("json")))
    by_feature = {j: [] for j in range(N_FEATURES)}
    for tree in model["learner"]["gradient_booster"]["model"]["trees"]:
        for left, feature, condition in zip(tree["left_children"], tree["split_indices"], tree["split_conditions"]):
            if left >= 0:
                by_feature[feature].append(condition)
    rows = np.zeros((n, N_FEATURES))
    for j, conditions in by_feature.items():
        if conditions:
            picked = np.asarray(rng.choice(conditions, size=n), dtype=np.float32)
            side = rng.integers(-1, 2, size=n)
            below, above = np.nextafter(picked, np.float32(-np.inf)), np.nextafter(picked, np.float32(np.inf))
            rows[:, j] = np.where(side < 0, below, np.where(side > 0, above, picked))
    rows[rng.random(rows.shape) < 0.1] = np.nan
    return rows


def probe(booster, seed=1):
    """2,000 rows: 1,000 drawn like the training data (with NaN), 1,000 sitting on the split conditions."""
    X, _ = data(seed, n=1000)
    return np.concatenate([X, threshold_rows(booster, 1000, seed)])


MODELS = {
    "depth 3": dict(depth=3, trees=60),
    "depth 6": dict(depth=6, trees=120),
    "scale_pos_weight": dict(depth=4, trees=80, scale_pos_weight=24.0),
    "base_score 0.3": dict(depth=4, trees=40, base_score=0.3),
}


@pytest.fixture(scope="module", params=list(MODELS), ids=list(MODELS))
def booster_and_walker(request):
    booster = train(**MODELS[request.param])
    return booster, TreeEnsemble.from_booster(booster)


def test_probabilities_and_margins_are_xgboosts(booster_and_walker):
    booster, walker = booster_and_walker
    X = probe(booster)
    assert X.shape == (2000, N_FEATURES) and np.isnan(X).any()
    expected = np.asarray(booster.inplace_predict(X), dtype=np.float64)
    np.testing.assert_allclose(walker.predict_proba(X), expected, rtol=0, atol=1e-6)
    # float32 sums in tree order from the same base margin: the margins are XGBoost's exactly
    margin = np.asarray(booster.inplace_predict(X, predict_type="margin"), dtype=np.float64)
    np.testing.assert_array_equal(walker.margin(X), margin)
    np.testing.assert_array_equal(walker.margin(X[5:6]), margin[5:6])  # row-independent


def test_approximate_contributions_are_xgboosts(booster_and_walker):
    booster, walker = booster_and_walker
    X = probe(booster)
    expected = booster.predict(xgb.DMatrix(X), pred_contribs=True, approx_contribs=True)
    got = walker.contributions_approx(X)
    assert got.shape == (2000, N_FEATURES) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected[:, :-1], rtol=0, atol=1e-5)
    # with XGBoost's bias column they add up to the margin
    margin = booster.inplace_predict(X, predict_type="margin")
    np.testing.assert_allclose(got.sum(axis=1) + expected[:, -1], margin, rtol=0, atol=1e-4)


def test_rows_without_missing_values_take_the_same_paths(booster_and_walker):
    """A batch without NaN skips the missing-value check: same margins and contributions as XGBoost, and as the
    same rows scored next to a row with NaN (the checking loop)."""
    booster, walker = booster_and_walker
    X = probe(booster)
    finite = X[~np.isnan(X).any(axis=1)]
    assert finite.shape[0] > 50
    margin = np.asarray(booster.inplace_predict(finite, predict_type="margin"), dtype=np.float64)
    np.testing.assert_array_equal(walker.margin(finite), margin)
    with_missing = np.vstack([finite, np.full((1, N_FEATURES), np.nan)])
    np.testing.assert_array_equal(walker.margin(with_missing)[:-1], margin)
    np.testing.assert_array_equal(walker.contributions_approx(with_missing)[:-1], walker.contributions_approx(finite))
    expected = booster.predict(xgb.DMatrix(finite), pred_contribs=True, approx_contribs=True)
    np.testing.assert_allclose(walker.contributions_approx(finite), expected[:, :-1], rtol=0, atol=1e-5)


def test_empty_and_malformed_inputs(booster_and_walker):
    _, walker = booster_and_walker
    empty = np.zeros((0, N_FEATURES))
    assert walker.margin(empty).shape == (0,) and walker.predict_proba(empty).shape == (0,)
    assert walker.contributions_approx(empty).shape == (0, N_FEATURES)
    with pytest.raises(ValueError, match="features"):
        walker.predict_proba(np.zeros((3, N_FEATURES - 1)))
    with pytest.raises(ValueError, match="features"):
        walker.contributions_approx(np.zeros(N_FEATURES))


def test_input_dtype_and_layout_do_not_matter(booster_and_walker):
    booster, walker = booster_and_walker
    X = probe(booster)[:300]
    expected = walker.predict_proba(X)
    np.testing.assert_array_equal(walker.predict_proba(X.astype(np.float32)), expected)
    np.testing.assert_array_equal(walker.predict_proba(np.asfortranarray(X)), expected)
    frozen = X.astype(np.float32)
    frozen.flags.writeable = False
    np.testing.assert_array_equal(walker.predict_proba(frozen), expected)


def test_early_stopping_keeps_all_trees_as_inplace_predict_does():
    X, y = data(3)
    train_rows, valid_rows = slice(0, 3000), slice(3000, None)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 6, "eta": 0.5, "nthread": 1},
                        xgb.DMatrix(X[train_rows], label=y[train_rows]), 200,
                        evals=[(xgb.DMatrix(X[valid_rows], label=y[valid_rows]), "valid")],
                        early_stopping_rounds=3, verbose_eval=False)
    assert booster.best_iteration + 1 < booster.num_boosted_rounds()
    walker = TreeEnsemble.from_booster(booster)
    assert walker.n_trees == booster.num_boosted_rounds()
    np.testing.assert_allclose(walker.predict_proba(X), booster.inplace_predict(X), rtol=0, atol=1e-6)


def test_unsupported_models_are_refused():
    X, y = data(4, n=500)
    regression = xgb.train({"objective": "reg:squarederror", "max_depth": 2}, xgb.DMatrix(X, label=y), 3)
    with pytest.raises(ValueError, match="objective"):
        TreeEnsemble.from_booster(regression)
    linear = xgb.train({"objective": "binary:logistic", "booster": "gblinear"},
                       xgb.DMatrix(np.nan_to_num(X), label=y), 3)
    with pytest.raises(ValueError, match="gbtree"):
        TreeEnsemble.from_booster(linear)


NAMES = [f"F{i}" for i in range(N_FEATURES)]


@pytest.mark.parametrize("model_type", [LightModel, HeavyModel])
def test_fitted_model_scores_and_explains_through_the_walker(model_type):
    X, y = data(5)
    model = model_type(n_estimators=40, max_depth=4, imbalance="scale_pos_weight", seed=2).fit(X, y, NAMES)
    walker = model.tree_walker()
    assert walker is not None  # it passed its check against XGBoost and is used
    rows = probe(model.booster_, seed=6)
    raw = model.raw_score(rows)
    np.testing.assert_array_equal(raw, walker.predict_proba(rows))
    np.testing.assert_allclose(raw, model.booster_.inplace_predict(rows), rtol=0, atol=1e-6)
    contribs = model.contributions(rows, approximate=True)
    np.testing.assert_array_equal(contribs, walker.contributions_approx(rows))
    reference = model.booster_.predict(xgb.DMatrix(rows), pred_contribs=True, approx_contribs=True,
                                      validate_features=False)[:, :-1]
    np.testing.assert_allclose(contribs, reference, rtol=0, atol=1e-5)
    # exact TreeSHAP stays XGBoost's
    exact = model.booster_.predict(xgb.DMatrix(rows[:50]), pred_contribs=True, validate_features=False)[:, :-1]
    np.testing.assert_allclose(model.contributions(rows[:50]), exact, rtol=0, atol=1e-6)


def test_walker_and_xgboost_batches_agree_bit_for_bit():
    X, y = data(7, n=WALKER_MAX_ROWS + 500)
    model = LightModel(n_estimators=30, max_depth=5, seed=0, n_jobs=2).fit(X, y, NAMES)
    rows = X[: WALKER_MAX_ROWS + 10]
    whole = model.raw_score(rows)  # XGBoost, thread pool
    pieces = np.concatenate([model.raw_score(rows[i:i + 64]) for i in range(0, len(rows), 64)])  # walker
    np.testing.assert_array_equal(pieces, whole)
    contribs = model.contributions(rows, approximate=True)
    small = np.concatenate([model.contributions(rows[i:i + 64], approximate=True) for i in range(0, len(rows), 64)])
    np.testing.assert_array_equal(small, contribs)


def test_walker_follows_the_booster_and_is_not_pickled(tmp_path):
    X, y = data(8)
    model = LightModel(n_estimators=20, max_depth=3, seed=0).fit(X, y, NAMES)
    first = model.tree_walker()
    assert model.tree_walker() is first  # built once per booster
    model.fit(X[:2000], y[:2000], NAMES)
    second = model.tree_walker()
    assert second is not None and second is not first  # a new booster, a new walker
    np.testing.assert_array_equal(model.raw_score(X[:100]), model.booster_.inplace_predict(X[:100]))

    again = pickle.loads(pickle.dumps(model))
    assert "_walker" not in again.__dict__
    np.testing.assert_array_equal(again.score(X), model.score(X))
    assert again.tree_walker() is not None

    model.save(tmp_path, "light")
    loaded = LightModel.load(tmp_path, "light")
    assert loaded.__dict__.get("_walker") is not None  # built at load, not in the first scored batch
    np.testing.assert_array_equal(loaded.raw_score(X), model.raw_score(X))


def test_a_walker_that_fails_its_check_is_not_used(monkeypatch):
    X, y = data(9)
    model = LightModel(n_estimators=20, max_depth=3, seed=0).fit(X[:2000], y[:2000], NAMES)
    model.booster_ = model.booster_.copy()  # a booster the walker has not been built for
    off = TreeEnsemble.predict_proba
    monkeypatch.setattr(TreeEnsemble, "predict_proba", lambda self, rows: off(self, rows) + 1e-7)
    with pytest.warns(RuntimeWarning, match="XGBoost"):
        assert model.tree_walker() is None
    np.testing.assert_array_equal(model.raw_score(X[:50]), model.booster_.inplace_predict(X[:50]))
