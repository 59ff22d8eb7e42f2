"""The heavy stage is fitted on the band the light stage leaves to it, and decides rows even on small data."""

import warnings

import numpy as np
import pandas as pd
import pytest

from fraudstream.detectors.cascade.types import Decision, Stage
from fraudstream.detectors.features.definition import DEFAULT_CONFIG
from fraudstream.detectors.schema import TransactionBatch
from fraudstream.training.train import ThresholdFallbackWarning, TrainSettings, fit_cascade

NAMES = DEFAULT_CONFIG.feature_names()
SMALL = TrainSettings(imbalance="none", calibration="isotonic", anomaly_methods=("IForest",), anomaly_max_rows=500,
                      light_trees=10, heavy_trees=20, heavy_depth=3, stacking_folds=2, review_capacity=50)


def featured_frame(days, start, seed, rows_a_day=400, fraud_rate=0.05):
    """Handbook + made-up feature columns: half the frauds are plain, half hide in a feature pair."""
    rng = np.random.default_rng(seed)
    n = days * rows_a_day
    y = (rng.random(n) < fraud_rate).astype(np.int8)
    hidden = (y == 1) & (rng.random(n) < 0.5)
    ts = pd.Timestamp(start) + pd.to_timedelta(np.sort(rng.uniform(0, days * 86_400, n)), unit="s")
    frame = pd.DataFrame({"TRANSACTION_ID": np.arange(n) + seed * 10**6, "TX_DATETIME": ts,
                          "CUSTOMER_ID": rng.integers(0, 300, n), "TERMINAL_ID": rng.integers(0, 500, n),
                          "TX_FRAUD": y})
    for i, name in enumerate(NAMES):
        frame[name] = rng.normal(size=n) + (i % 5 == 0) * (y & ~hidden).astype(float) * rng.normal(2.5, 1.0, n)
    frame[NAMES[1]] += hidden * 1.2
    frame[NAMES[2]] += hidden * 1.2
    frame["TX_AMOUNT"] = rng.gamma(2.0, 30.0, n) + (y & ~hidden) * 150.0
    frame["CUSTOMER_NB_TX_BURST_WINDOW"] = rng.integers(1, 4, n)
    return frame


def decide(cascade, frame):
    X = frame[cascade.feature_names].to_numpy(np.float64)
    return cascade.score(X, TransactionBatch.from_frame(frame))


def test_small_validation_warns_and_the_heavy_stage_still_decides():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cascade = fit_cascade(featured_frame(10, "2020-01-01", 0), featured_frame(2, "2020-01-18", 1, 150, 0.03),
                              SMALL)
    messages = [str(w.message) for w in caught if issubclass(w.category, ThresholdFallbackWarning)]
    assert messages and any("t_block_heavy" in m for m in messages)
    assert cascade.metrics["threshold_fallbacks"]
    th = cascade.thresholds
    assert th.t_block_heavy == 0.95 and 0.10 <= th.t_review <= 0.95  # the documented defaults, not 2.0 / 0.0
    result = decide(cascade, featured_frame(3, "2020-01-25", 2))
    routed = result.stage == Stage.HEAVY
    assert routed.any() and (routed & (result.decision == Decision.ALLOW)).any()


@pytest.mark.parametrize("heavy_rows", ["band", "routed", "all"])
def test_heavy_training_rows_are_recorded(heavy_rows):
    settings = SMALL.model_copy(update={"heavy_rows": heavy_rows})
    cascade = fit_cascade(featured_frame(10, "2020-01-01", 0), featured_frame(5, "2020-01-18", 1), settings)
    info = cascade.metrics["heavy_training"]
    if heavy_rows == "all":
        assert info["rows"] == "all" and info["train_rows"] == 4000
    else:
        assert info["rows"] in ("band", heavy_rows) and 0 < info["train_rows"] < 4000 and info["train_frauds"] >= 20
    if info["rows"] == "routed":  # fitted on exactly the validation band it is measured on
        assert info["valid_rows"] == cascade.metrics["ambiguous_valid"]["rows"]
    assert {"added_ap", "added_recall", "missed_frauds"} <= set(cascade.metrics["anomaly_valid"]["IForest"])
    band = cascade.metrics["ambiguous_valid"]
    assert band["rows"] > 0 and np.isfinite(band["heavy_ap"])


def test_heavy_rows_must_be_band_or_all():
    settings = SMALL.model_copy(update={"heavy_rows": "some"})
    with pytest.raises(ValueError, match="heavy_rows"):
        fit_cascade(featured_frame(10, "2020-01-01", 0), featured_frame(5, "2020-01-18", 1), settings)


def test_the_heavy_model_is_calibrated_with_platt_whatever_the_light_models_calibration():
    train, valid = featured_frame(10, "2020-01-01", 0), featured_frame(4, "2020-01-18", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThresholdFallbackWarning)
        default = fit_cascade(train, valid, SMALL)
        chosen = fit_cascade(train, valid, SMALL.model_copy(update={"heavy_calibration": "auto"}))
        same = fit_cascade(train, valid, SMALL.model_copy(update={"heavy_calibration": "same"}))
    assert default.metrics["calibration"] == "isotonic" and default.metrics["heavy_calibration"] == "platt"
    assert same.metrics["heavy_calibration"] == "isotonic"
    table = chosen.metrics["heavy_calibration_valid_brier"]
    assert set(table) == {"isotonic", "platt"}
    assert chosen.metrics["heavy_calibration"] == min(table, key=table.get)
    with pytest.raises(ValueError, match="heavy_calibration"):
        TrainSettings(heavy_calibration="sigmoid")


def test_only_the_heavy_model_reads_the_cards_recent_sequence():
    sequence = DEFAULT_CONFIG.sequence_feature_names()
    screening = DEFAULT_CONFIG.screening_feature_names()
    assert sequence and NAMES == screening + sequence

    def with_sequence_signal(frame, seed):
        # the hidden frauds show in the card's recent large charges, which the screening features do not carry
        rng = np.random.default_rng(seed)
        hidden = (frame["TX_FRAUD"] == 1) & (frame[NAMES[1]] > frame[NAMES[1]].median())
        frame["CUSTOMER_PREV_MAX_AMOUNT_RATIO"] = rng.gamma(2.0, 0.5, len(frame)) + hidden * 4.0
        return frame

    cascade = fit_cascade(with_sequence_signal(featured_frame(10, "2020-01-01", 0), 0),
                          with_sequence_signal(featured_frame(4, "2020-01-18", 1), 1), SMALL)
    assert cascade.light.feature_names_ == screening
    assert cascade.heavy.feature_names_[:len(NAMES)] == NAMES
    assert cascade.light.booster_.num_features() == len(screening)
    gain = cascade.heavy.booster_.get_score(importance_type="total_gain")
    top = sorted(gain, key=gain.__getitem__, reverse=True)[:3]
    assert "CUSTOMER_PREV_MAX_AMOUNT_RATIO" in top  # among the heavy model's strongest inputs
    result = decide(cascade, featured_frame(2, "2020-01-25", 2))  # scores the whole feature matrix
    assert result.decision.shape == (800,)
