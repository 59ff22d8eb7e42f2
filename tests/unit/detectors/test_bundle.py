"""Model bundles: versioned layout, LATEST, checksums, refusal of mismatched feature sets."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from fraudstream.detectors import bundle as bundle_module
from fraudstream.detectors.bundle import (
    LATEST,
    MANIFEST,
    MANIFEST_CHECKSUM,
    ModelBundleError,
    load_bundle,
    save_bundle,
)
from fraudstream.detectors.features.definition import FEATURE_NAMES, FEATURE_SET_VERSION
from fraudstream.detectors.schema import TransactionBatch
from fraudstream.training.train import TrainSettings, fit_cascade

SMALL = TrainSettings(imbalance="none", calibration="isotonic", anomaly_methods=("IForest",), anomaly_max_rows=500,
                      light_trees=10, heavy_trees=15, heavy_depth=3, stacking_folds=2, review_capacity=20)


def featured_frame(days, start, seed):
    """Transactions with made-up feature columns in which fraud is learnable (handbook + feature columns)."""
    rng = np.random.default_rng(seed)
    n = days * 400
    y = (rng.random(n) < 0.05).astype(np.int8)
    ts = pd.Timestamp(start) + pd.to_timedelta(np.sort(rng.uniform(0, days * 86_400, n)), unit="s")
    frame = pd.DataFrame({"TRANSACTION_ID": np.arange(n) + seed * 10**6, "TX_DATETIME": ts,
                          "CUSTOMER_ID": rng.integers(0, 300, n), "TERMINAL_ID": rng.integers(0, 500, n),
                          "TX_FRAUD": y})
    for i, name in enumerate(FEATURE_NAMES):
        frame[name] = rng.normal(size=n) + (i % 4 == 0) * y.astype(float) * rng.normal(2.0, 1.0, n)
    frame["TX_AMOUNT"] = rng.gamma(2.0, 30.0, n) + y * 150.0
    frame["CUSTOMER_NB_TX_BURST_WINDOW"] = rng.integers(1, 4, n)
    return frame


@pytest.fixture(scope="module")
def cascade():
    return fit_cascade(featured_frame(10, "2020-01-01", 0), featured_frame(4, "2020-01-18", 1), SMALL)


def test_saved_bundle_loads_and_scores_identically(cascade, tmp_path):
    directory = save_bundle(cascade, tmp_path, {"training_data": {"rows_train": 123}})
    assert directory == tmp_path / cascade.version
    assert (tmp_path / LATEST).read_text().strip() == cascade.version
    loaded = load_bundle(tmp_path)  # root: follows LATEST
    assert loaded.version == cascade.version and loaded.path == directory
    manifest = loaded.manifest
    assert manifest["feature_names"] == FEATURE_NAMES
    assert manifest["feature_set_version"] == FEATURE_SET_VERSION
    assert manifest["training_data"]["rows_train"] == 123
    assert set(manifest["files"]) >= {"light.json", "heavy.json", "anomaly.pkl", "rules.json"}
    assert manifest["thresholds"] == cascade.thresholds.to_dict()
    test = featured_frame(2, "2020-01-25", 2)
    X, batch = test[FEATURE_NAMES].to_numpy(), TransactionBatch.from_frame(test)
    a, b = cascade.score(X, batch), loaded.cascade.score(X, batch)
    np.testing.assert_array_equal(a.decision, b.decision)
    np.testing.assert_array_equal(a.risk, b.risk)
    assert a.reasons == b.reasons


def test_latest_moves_to_the_newest_version_and_versions_are_immutable(cascade, tmp_path):
    save_bundle(cascade, tmp_path)
    with pytest.raises(ModelBundleError, match="already exists"):
        save_bundle(cascade, tmp_path)
    newer = cascade.with_thresholds(cascade.thresholds)
    newer.version = cascade.version + "-b"
    save_bundle(newer, tmp_path)
    assert load_bundle(tmp_path).version == newer.version
    assert load_bundle(tmp_path / cascade.version).version == cascade.version
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_tampered_file_is_refused(cascade, tmp_path):
    directory = save_bundle(cascade, tmp_path)
    with (directory / "rules.json").open("a") as fh:
        fh.write(" ")
    with pytest.raises(ModelBundleError, match="rules.json.*sha256"):
        load_bundle(directory)


def _rewrite_manifest(directory, **changes):
    """Change manifest fields and record the new manifest checksum (a bundle made by another code version)."""
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest.update(changes)
    (directory / MANIFEST).write_text(json.dumps(manifest))
    digest = hashlib.sha256((directory / MANIFEST).read_bytes()).hexdigest()
    (directory / MANIFEST_CHECKSUM).write_text(f"{digest}  {MANIFEST}\n")


def test_an_edited_manifest_field_is_refused(cascade, tmp_path):
    directory = save_bundle(cascade, tmp_path)
    assert (directory / MANIFEST_CHECKSUM).read_text().split() == [
        hashlib.sha256((directory / MANIFEST).read_bytes()).hexdigest(), MANIFEST]
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["thresholds"] = {k: (0.99 if isinstance(v, float) else v) for k, v in manifest["thresholds"].items()}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    with pytest.raises(ModelBundleError, match="manifest was changed after training"):
        load_bundle(directory)


def test_a_bundle_without_its_manifest_checksum_is_refused(cascade, tmp_path):
    directory = save_bundle(cascade, tmp_path)
    (directory / MANIFEST_CHECKSUM).unlink()
    with pytest.raises(ModelBundleError, match="manifest.json.sha256: missing"):
        load_bundle(tmp_path)


def test_other_feature_set_version_is_refused(cascade, tmp_path):
    directory = save_bundle(cascade, tmp_path)
    _rewrite_manifest(directory, feature_set_version="fs-0")
    with pytest.raises(ModelBundleError, match="feature set 'fs-0'"):
        load_bundle(directory)


def test_other_feature_order_is_refused(cascade, tmp_path):
    directory = save_bundle(cascade, tmp_path)
    swapped = list(FEATURE_NAMES)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    _rewrite_manifest(directory, feature_names=swapped)
    with pytest.raises(ModelBundleError, match="feature names/order"):
        load_bundle(directory)


def test_feature_set_changed_in_code_is_refused(cascade, tmp_path, monkeypatch):
    directory = save_bundle(cascade, tmp_path)
    monkeypatch.setattr(bundle_module, "FEATURE_SET_VERSION", "fs-999")
    with pytest.raises(ModelBundleError, match="fs-999"):
        load_bundle(directory)


def test_missing_or_dangling_latest_is_reported(tmp_path):
    with pytest.raises(ModelBundleError, match="neither"):
        load_bundle(tmp_path)
    (tmp_path / LATEST).write_text("v-gone\n")
    with pytest.raises(ModelBundleError, match="v-gone"):
        load_bundle(tmp_path)


def test_without_anomaly_copy_ignores_the_anomaly_score(cascade):
    plain = cascade.without_anomaly()
    assert plain.use_anomaly is False and cascade.use_anomaly is True
    test = featured_frame(2, "2020-01-25", 3)
    X, batch = test[FEATURE_NAMES].to_numpy(), TransactionBatch.from_frame(test)
    result = plain.score(X, batch)
    assert not any("anomaly_review" in r for reasons in result.reasons for r in reasons)
