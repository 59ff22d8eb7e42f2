"""End to end on a small simulated set: train (CLI), bundle, score (CLI), and stream-equivalent batches."""

import pandas as pd
import pytest
from click.testing import CliRunner

from fraudstream.cli.main import cli
from fraudstream.detectors.bundle import load_bundle
from fraudstream.detectors.cascade.calibration import CalibrationTargets
from fraudstream.detectors.schema import TX_DATETIME
from fraudstream.training.datasets import write_transactions
from fraudstream.training.scoring import OUTPUT_COLUMNS, score_frame
from fraudstream.training.simulator import SimulationConfig, simulate
from fraudstream.training.train import TrainingDataError, TrainSettings, fit_cascade

FAST_ENV = {
    "FRAUDSTREAM_TRAIN_LIGHT_TREES": "20", "FRAUDSTREAM_TRAIN_HEAVY_TREES": "30",
    "FRAUDSTREAM_TRAIN_HEAVY_DEPTH": "4", "FRAUDSTREAM_TRAIN_ANOMALY_METHODS": "IForest,COPOD",
    "FRAUDSTREAM_TRAIN_ANOMALY_MAX_ROWS": "2000", "FRAUDSTREAM_TRAIN_STACKING_FOLDS": "2",
}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    frame = simulate(SimulationConfig(n_customers=300, n_terminals=600, nb_days=35, seed=3))
    path = tmp_path_factory.mktemp("data") / "tx.parquet"
    write_transactions(frame, path)
    return path


@pytest.fixture(scope="module")
def trained(data_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    result = CliRunner().invoke(cli, ["train", str(data_file), "--until", "2018-04-28", "--out", str(out),
                                      "--valid-days", "5", "--review-capacity", "10"], env=FAST_ENV)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_train_writes_a_bundle_and_prints_the_validation_table(trained):
    out, output = trained
    bundle = load_bundle(out)
    assert "ambiguous rows" in output and str(out / bundle.version) in output
    manifest = bundle.manifest
    data = manifest["training_data"]
    assert data["valid_end"] == "2018-04-29 00:00:00"  # --until is inclusive
    assert pd.Timestamp(data["train_end"]) + pd.Timedelta(days=7) == pd.Timestamp(data["valid_start"])
    assert manifest["imbalance"] in ("none", "scale_pos_weight", "downsample")
    assert manifest["train_settings"]["light_trees"] == 20  # read from FRAUDSTREAM_TRAIN_*
    policy = manifest["metrics"]["policy_valid"]
    assert policy["review_cards_per_day_max"] <= 10
    assert manifest["metrics"]["valid"]["light_ap"] > 0.2  # far above the fraud rate: the model learnt
    band, below = manifest["metrics"]["ambiguous_valid"], manifest["metrics"]["ambiguous_unsplit_valid"]
    assert 0 < below["rows"] <= band["rows"] and below["frauds"] <= band["frauds"]
    assert "below the first light BLOCK" in output and f"({below['rows']} rows)" in output
    region = manifest["metrics"]["heavy_block_region_valid"]
    assert 0 <= region["frauds"] <= region["rows"] <= band["rows"] and 0 <= region["bound"] <= 1
    kept = bundle.cascade.policy.thresholds.t_block_heavy < 2.0
    assert region["kept"] == kept
    assert ("heavy BLOCK region" in output) == (not kept)  # why there is none, when there is none


def test_score_cli_writes_every_column_and_counts(trained, data_file, tmp_path):
    out, _ = trained
    dest = tmp_path / "scores.csv"
    result = CliRunner().invoke(cli, ["score", str(data_file), "--model", str(out), "--from", "2018-04-29",
                                      "--to", "2018-05-03", "--out", str(dest)])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(dest)
    assert list(scores.columns) == OUTPUT_COLUMNS
    assert set(scores.DECISION) <= {"ALLOW", "BLOCK", "REVIEW"} and set(scores.STAGE) <= {"RULES", "LIGHT", "HEAVY"}
    assert scores.RISK.between(0, 1).all()
    for name in ("ALLOW", "BLOCK", "REVIEW"):
        assert f"{name} " in result.output
    flagged = scores[scores.DECISION != "ALLOW"]
    assert flagged.REASONS.str.contains(":").all()
    frame = pd.read_parquet(data_file)
    period = frame[(frame[TX_DATETIME] >= "2018-04-29") & (frame[TX_DATETIME] < "2018-05-03")]
    assert sorted(scores.TRANSACTION_ID) == sorted(period.TRANSACTION_ID)


def test_scores_do_not_depend_on_chunking(trained, data_file):
    out, _ = trained
    bundle = load_bundle(out)
    frame = pd.read_parquet(data_file)
    whole = score_frame(frame, bundle, "2018-04-29", "2018-05-03", chunk_rows=100_000)
    pieces = score_frame(frame, bundle, "2018-04-29", "2018-05-03", chunk_rows=700)
    pd.testing.assert_frame_equal(whole, pieces)


def test_fit_cascade_refuses_unusable_frames(trained, data_file):
    frame = pd.read_parquet(data_file)
    with pytest.raises(TrainingDataError, match="missing column"):
        fit_cascade(frame, frame, TrainSettings())


def test_score_cli_reports_a_bad_model_directory_and_an_empty_period(trained, data_file, tmp_path):
    out, _ = trained
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["score", str(data_file), "--from", "2018-04-29", "--to", "2018-05-03", "--out", str(tmp_path / "s.csv")]
    result = CliRunner().invoke(cli, args + ["--model", str(empty)])
    assert result.exit_code != 0 and "neither a model version directory" in result.output
    result = CliRunner().invoke(cli, ["score", str(data_file), "--model", str(out), "--from", "2030-01-01",
                                      "--to", "2030-01-02", "--out", str(tmp_path / "s.csv")])
    assert result.exit_code != 0 and "no transaction in" in result.output
    assert not (tmp_path / "s.csv").exists()


def test_the_bundle_holds_drift_reference_histograms(trained):
    from fraudstream.detectors.drift import ANOMALY_SCORE, LIGHT_SCORE, REFERENCE_BINS, load_reference

    out, _ = trained
    reference = load_reference(load_bundle(out).manifest["metrics"]["drift_reference"])
    assert {LIGHT_SCORE, ANOMALY_SCORE, "TX_AMOUNT", "TERMINAL_ID_RISK_7DAY_WINDOW"} <= set(reference)
    for name, histogram in reference.items():
        assert 2 <= histogram.shares.size <= REFERENCE_BINS, name
        assert histogram.shares.sum() == pytest.approx(1.0), name
    # amounts are continuous: close to deciles
    assert reference["TX_AMOUNT"].shares == pytest.approx([0.1] * REFERENCE_BINS, abs=0.02)


def test_calibration_targets_read_the_review_settings_from_the_environment():
    environ = {"FRAUDSTREAM_TRAIN_REVIEW_MIN_PRECISION": "0.3", "FRAUDSTREAM_TRAIN_ANOMALY_REVIEW_SHARE": "0.5"}
    targets = TrainSettings.from_env(environ).targets()
    assert targets.review_min_precision == 0.3 and targets.anomaly_review_share == 0.5
    assert TrainSettings().targets().review_min_precision == 0.1  # the calibration's own default
    with pytest.raises(ValueError, match="REVIEW_MIN_PRECISION"):
        TrainSettings.from_env({"FRAUDSTREAM_TRAIN_REVIEW_MIN_PRECISION": "1.5"})


def test_calibration_targets_read_the_block_split_settings_from_the_environment():
    environ = {"FRAUDSTREAM_TRAIN_SPLIT_CANDIDATES": "0", "FRAUDSTREAM_TRAIN_BLOCK_SPLIT_LOSS": "0.05"}
    targets = TrainSettings.from_env(environ).targets()
    assert targets.split_candidates == 0 and targets.block_split_loss == 0.05
    assert TrainSettings().targets().split_candidates == CalibrationTargets().split_candidates == 10
    with pytest.raises(ValueError, match="SPLIT_CANDIDATES"):
        TrainSettings.from_env({"FRAUDSTREAM_TRAIN_SPLIT_CANDIDATES": "-1"})


def test_the_block_precision_confidence_is_a_setting():
    assert TrainSettings().targets().block_confidence == CalibrationTargets().block_confidence == 0.9
    assert TrainSettings.from_env({"FRAUDSTREAM_TRAIN_BLOCK_CONFIDENCE": "0"}).targets().block_confidence == 0.0
    with pytest.raises(ValueError, match="BLOCK_CONFIDENCE"):
        TrainSettings.from_env({"FRAUDSTREAM_TRAIN_BLOCK_CONFIDENCE": "1.5"})
