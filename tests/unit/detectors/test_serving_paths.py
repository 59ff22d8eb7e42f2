"""Fast serving paths give exactly the results of the plain library calls they replace."""

import pickle

import numpy as np
import pytest

from fraudstream.detectors.cascade.policy import FORMAT_PER_ROW_MAX, Thresholds, threshold_reasons
from fraudstream.detectors.cascade.types import Decision, Stage
from fraudstream.detectors.models import anomaly as anomaly_module
from fraudstream.detectors.models.anomaly import AnomalyModel, select_anomaly_model
from fraudstream.detectors.models.light import PARALLEL_MIN_ROWS, LightModel


def data(seed=0, n=3000, d=5):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(np.int8)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 50.0, d)
    X[:, 0] += 4 * y
    X[:, 2] = np.round(X[:, 2])  # ties on thresholds
    return X, y


def test_isolation_forest_walk_is_bit_for_bit_pyod():
    X, y = data()
    model = AnomalyModel("IForest", max_train_rows=1000, seed=3, columns=(0, 1, 2, 4)).fit(X, y)
    probe, _ = data(seed=1, n=700)  # several walk chunks
    expected = np.asarray(model.detector_.decision_function(model._select(probe)))
    assert model._paths() is not None  # the walker passed its own check and is used
    np.testing.assert_array_equal(model.raw_score(probe), expected)
    np.testing.assert_array_equal(model.raw_score(probe[3:4]), expected[3:4])
    # the walker is not saved with the model, and is rebuilt identically after loading
    again = pickle.loads(pickle.dumps(model))
    assert "_forest_paths" not in again.__dict__
    np.testing.assert_array_equal(again.score(probe), model.score(probe))


def test_isolation_forest_walk_refuses_non_finite_rows():
    X, y = data()
    model = AnomalyModel("IForest", max_train_rows=500).fit(X, y)
    bad = X[:2].copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.score(bad)


def test_one_thread_scoring_matches_the_thread_pool():
    X, y = data(d=6)
    model = LightModel(n_estimators=30, max_depth=3, n_jobs=2).fit(X, y, [f"F{i}" for i in range(6)])
    rows = X[: PARALLEL_MIN_ROWS + 10]
    whole = model.raw_score(rows)  # thread pool
    pieces = np.concatenate([model.raw_score(rows[i:i + 7]) for i in range(0, len(rows), 7)])  # one thread
    np.testing.assert_array_equal(pieces, whole)
    contribs = model.contributions(rows)
    small = np.concatenate([model.contributions(rows[i:i + 50]) for i in range(0, len(rows), 50)])
    np.testing.assert_array_equal(small, contribs)


def reference_reasons(decision, stage, light, anomaly, heavy, t, use_anomaly):
    """The per-row definition of the threshold reasons."""
    out = []
    for d, s, lt, an, hv in zip(decision, stage, light, anomaly, heavy):
        if s == Stage.RULES:
            out.append("")
        elif s == Stage.LIGHT:
            if d == Decision.BLOCK:
                out.append(f"light_block:{lt:.3f}>={t.t_block_light:.3f}")
            elif use_anomaly:
                out.append(f"light_allow:<={t.t_allow_light:.3f},anomaly:<={t.t_anomaly_allow:.3f}")
            else:
                out.append(f"light_allow:<={t.t_allow_light:.3f}")
        elif d == Decision.BLOCK:
            out.append(f"heavy_block:{hv:.3f}>={t.t_block_heavy:.3f}")
        elif d == Decision.REVIEW:
            if hv >= t.t_review:
                out.append(f"heavy_review:{hv:.3f}>={t.t_review:.3f}")
            else:
                out.append(f"anomaly_review:{an:.3f}>={t.t_anomaly_review:.3f}")
        else:
            out.append(f"heavy_allow:<{min(t.t_review, t.t_block_heavy):.3f}")
    return out


@pytest.mark.parametrize("use_anomaly", [True, False])
@pytest.mark.parametrize("n", [600, 40])  # 40 rows: every kind of reason below the per-row formatting bound
def test_vectorized_threshold_reasons_match_the_row_definition(use_anomaly, n):
    rng = np.random.default_rng(4)
    t = Thresholds(t_block_light=0.9, t_allow_light=0.05, t_anomaly_allow=0.97, t_block_heavy=0.8, t_review=0.3,
                   t_anomaly_review=0.995)
    decision = rng.integers(0, 3, n).astype(np.int8)
    stage = rng.integers(0, 3, n).astype(np.int8)
    light, anomaly, heavy = rng.random(n), rng.random(n), rng.random(n)
    heavy[stage != Stage.HEAVY] = np.nan
    got = threshold_reasons(decision, stage, light, anomaly, heavy, t, use_anomaly)
    assert got == reference_reasons(decision, stage, light, anomaly, heavy, t, use_anomaly)
    assert {r.split(":")[0] for r in got if r} >= {"light_block", "light_allow", "heavy_block", "heavy_allow"}
    per_kind = [sum(r.startswith(kind + ":") for r in got) for kind in ("light_block", "heavy_block", "heavy_review")]
    vectorized = [count > FORMAT_PER_ROW_MAX for count in per_kind]
    assert all(vectorized) if n == 600 else not any(vectorized), per_kind  # each path is taken


def test_anomaly_selection_records_call_times_and_applies_the_budget():
    X, y = data()
    Xv, yv = data(seed=5)
    model, table = select_anomaly_model(X, y, Xv, yv, ("HBOS", "IForest"), max_train_rows=800,
                                        max_call_ms=float("inf"))
    for row in table.values():
        assert row["call_ms_1row"] > 0 and row["call_ms_1000rows"] > 0 and row["within_budget"]
    assert table[model.method]["average_precision"] == max(t["average_precision"] for t in table.values())
    with pytest.raises(ValueError, match="budget"):
        select_anomaly_model(X, y, Xv, yv, ("HBOS",), max_train_rows=800, max_call_ms=0.0)


def test_anomaly_budget_leaves_out_slow_methods(monkeypatch):
    X, y = data()
    Xv, yv = data(seed=5)
    measured = {"HBOS": 0.5, "IForest": 9.0}  # per-call times (ms) standing in for a machine's measurements
    monkeypatch.setattr(anomaly_module, "serving_call_ms", lambda model, *args: measured[model.method])
    model, table = select_anomaly_model(X, y, Xv, yv, ("IForest", "HBOS"), max_train_rows=800, max_call_ms=2.0)
    assert model.method == "HBOS"
    assert table["IForest"]["within_budget"] is False and table["HBOS"]["within_budget"] is True
