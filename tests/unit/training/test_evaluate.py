"""The evaluation protocol: fold periods without leakage, settings, the report table, and a small full run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fraudstream.detectors.schema import CUSTOMER_ID, TRANSACTION_ID, TX_DATETIME
from fraudstream.training.evaluate import (
    EvaluationSettings,
    ProtocolError,
    _period,
    novel_attack_fold,
    prequential_folds,
)
from fraudstream.training.metrics import CascadeFigures
from fraudstream.training.report import PUBLISHED_XGBOOST, EvaluationReport, FoldResult, format_report

DAY = pd.Timedelta(days=1)
FIRST = pd.Timestamp("2018-04-01")
LAST = pd.Timestamp("2018-09-30")


def _periods(fold):
    return [fold.valid, fold.train, (fold.delay_start, fold.test_start), fold.test]


def test_default_folds_end_at_the_data_and_step_back_a_week():
    settings = EvaluationSettings()
    folds = prequential_folds(FIRST, LAST, settings)
    assert len(folds) == settings.folds
    assert folds[0].test_end == LAST + DAY
    for i, fold in enumerate(folds):
        assert fold.index == i
        assert fold.train_start == folds[0].train_start - 7 * i * DAY
        lengths = [(end - start) / DAY for start, end in _periods(fold)]
        assert lengths == [settings.delay_days, settings.train_days, settings.delay_days, settings.test_days]


def test_fold_periods_are_contiguous_and_labels_known_before_the_test():
    settings = EvaluationSettings(folds=5)
    for fold in prequential_folds(FIRST, LAST, settings):
        periods = _periods(fold)
        for (_, end), (start, _) in zip(periods, periods[1:]):
            assert end == start  # back to back, no overlap
        delay = settings.delay_days * DAY
        assert fold.train[1] - DAY + delay < fold.test_start  # last training label known before the test
        assert fold.valid[1] - DAY + delay < fold.test_start
        assert fold.valid_start >= FIRST


def test_anchor_reproduces_the_handbook_test_weeks():
    folds = prequential_folds(FIRST, LAST, EvaluationSettings(anchor="2018-08-15"))
    assert folds[0].describe()["test"] == "2018-08-29..2018-09-04"
    assert folds[-1].describe()["train"] == "2018-07-25..2018-07-31"
    assert folds[-1].describe()["test"] == "2018-08-08..2018-08-14"


def test_folds_outside_the_data_are_refused_with_dates():
    with pytest.raises(ProtocolError, match="data starts 2018-04-01"):
        prequential_folds(FIRST, FIRST + 40 * DAY, EvaluationSettings(folds=4))
    with pytest.raises(ProtocolError, match="after the last day of the data 2018-09-30"):
        prequential_folds(FIRST, LAST, EvaluationSettings(anchor="2018-09-20"))
    with pytest.raises(ProtocolError, match="anchor: not a date"):
        EvaluationSettings(anchor="next tuesday")


def test_no_transaction_is_shared_between_periods_of_a_frame():
    rng = np.random.default_rng(1)
    n = 5000
    times = FIRST + pd.to_timedelta(np.sort(rng.uniform(0, 60 * 86400, n)), unit="s")
    frame = pd.DataFrame({TRANSACTION_ID: np.arange(n), TX_DATETIME: times, CUSTOMER_ID: rng.integers(0, 50, n)})
    settings = EvaluationSettings(folds=2)
    last_day = frame[TX_DATETIME].max().normalize()
    for fold in prequential_folds(FIRST, last_day, settings):
        ids = [set(_period(frame, p)[TRANSACTION_ID]) for p in _periods(fold)]
        assert all(len(x) > 0 for x in ids)
        for i in range(len(ids)):
            for j in range(i + 1, len(ids)):
                assert not ids[i] & ids[j]
        train = _period(frame, fold.train)
        test = _period(frame, fold.test)
        assert train[TX_DATETIME].max() + settings.delay_days * DAY <= test[TX_DATETIME].min()


def test_novel_attack_fold_trains_before_the_first_attack():
    first_seen = pd.Timestamp("2018-09-10 13:45:00")
    settings = EvaluationSettings()
    fold = novel_attack_fold(first_seen, FIRST, LAST, settings)
    assert fold.test_start == pd.Timestamp("2018-09-10")
    assert fold.train[1] <= first_seen - settings.delay_days * DAY
    assert fold.test_end == pd.Timestamp("2018-09-17")
    # test period cut at the end of the data
    late = novel_attack_fold(pd.Timestamp("2018-09-28 01:00"), FIRST, LAST, settings)
    assert late.test_end == LAST + DAY
    with pytest.raises(ProtocolError, match="data starts"):
        novel_attack_fold(FIRST + 10 * DAY, FIRST, LAST, settings)


def test_settings_from_environment_and_overrides():
    env = {"FRAUDSTREAM_EVAL_FOLDS": "2", "FRAUDSTREAM_EVAL_REVIEW_CAPACITY": "50",
           "FRAUDSTREAM_EVAL_ANCHOR": "2018-08-15", "FRAUDSTREAM_TRAIN_DAYS": "99"}
    settings = EvaluationSettings.from_env(env, review_capacity=None, seed=3)
    assert (settings.folds, settings.review_capacity, settings.anchor, settings.seed) == (2, 50, "2018-08-15", 3)
    assert EvaluationSettings.from_env(env, folds=6).folds == 6
    assert settings.train_days == EvaluationSettings().train_days, "another service's variable was read"
    with pytest.raises(ProtocolError, match="FRAUDSTREAM_EVAL_FOLDS"):
        EvaluationSettings.from_env({"FRAUDSTREAM_EVAL_FOLDS": "four"})
    with pytest.raises(ProtocolError, match="FRAUDSTREAM_EVAL_FOLDS.*greater than or equal to 1"):
        EvaluationSettings.from_env({"FRAUDSTREAM_EVAL_FOLDS": "0"})


def _figures(block_precision: float) -> CascadeFigures:
    return CascadeFigures(
        share_rules=0.01, share_light=0.98, share_heavy=0.01, share_blocked=0.002, share_reviewed=0.01,
        block_precision=block_precision, block_recall=0.4, review_cards_per_day=80.0, fraud_caught_share=0.6,
        fraud_amount=1000.0, fraud_amount_stopped=600.0, fraud_amount_stopped_share=0.6,
    )


def test_report_table_shows_mean_and_std_over_folds():
    settings = EvaluationSettings(folds=2)
    folds = prequential_folds(FIRST, LAST, settings)
    results = []
    for fold, auc, bp in zip(folds, (0.8, 0.9), (0.5, float("nan"))):
        metrics = {m: {"auc_roc": auc, "average_precision": auc - 0.2, "card_precision_at_k": auc / 4}
                   for m in ("light", "heavy", "cascade")}
        results.append(FoldResult(fold, 1000, 20, metrics, _figures(bp)))
    report = EvaluationReport(settings, results)
    summary = report.summary()
    assert summary["cascade"]["auc_roc"] == pytest.approx((0.85, np.std([0.8, 0.9], ddof=1)))
    assert summary["figures"]["block_precision"] == (0.5, 0.0)  # the nan fold is left out
    text = format_report(report)
    assert "0.850 +- 0.071" in text
    assert f"{PUBLISHED_XGBOOST['average_precision']:.3f}" in text
    table = [line for line in text.splitlines() if line.startswith(("light", "heavy", "cascade (risk)"))]
    assert len(table) == 3 and len({line.index("+-") for line in table}) == 1  # aligned columns
    data = report.to_json()
    json.dumps(data, allow_nan=False)  # nan written as null
    assert data["folds"][1]["cascade_figures"]["block_precision"] is None


# ---- a small full run (needs the simulator, the batch features and the trainer) -----------------------------


def test_small_end_to_end_evaluation(tmp_path):
    pytest.importorskip("fraudstream.training.train")
    pytest.importorskip("fraudstream.detectors.features.batch")
    from fraudstream.training.evaluate import evaluate
    from fraudstream.training.simulator import SimulationConfig, simulate
    from fraudstream.training.train import TrainSettings

    frame = simulate(SimulationConfig(n_customers=300, n_terminals=600, nb_days=60, start_date="2018-04-01",
                                      seed=7, novel_start_date="2018-05-25", novel_customers_per_day=3))
    messages: list[str] = []
    # small models and one anomaly method keep the run short; the protocol is the same
    fast = TrainSettings(review_capacity=20, imbalance="none", calibration="isotonic", anomaly_methods=("HBOS",),
                         anomaly_max_rows=2000, light_trees=30, heavy_trees=40, stacking_folds=2)
    report = evaluate(frame, EvaluationSettings(folds=2, review_capacity=20), progress=messages.append,
                      train_settings=fast)
    assert len(report.folds) == 2
    for result in report.folds:
        for model in ("light", "heavy", "cascade"):
            m = result.metrics[model]
            assert 0.5 < m["auc_roc"] <= 1.0
            assert 0.0 <= m["card_precision_at_k"] <= 1.0
        fig = result.figures
        assert fig.share_rules + fig.share_light + fig.share_heavy == pytest.approx(1.0)
        assert 0.0 <= fig.fraud_caught_share <= 1.0
    assert report.novel is not None and report.novel.n_scenario > 0
    assert report.novel.fold.train[1] <= report.novel.first_seen
    assert any("fold 1" in msg for msg in messages)
    text = format_report(report)
    assert "novel attack" in text and "cascade (risk)" in text
    assert "same models, every transaction" in text and report.folds[0].metrics_all_cards is not None


def test_cli_refuses_folds_that_do_not_fit_the_file(tmp_path):
    from click.testing import CliRunner

    from fraudstream.cli.evaluate import command
    from fraudstream.training.datasets import write_transactions
    from fraudstream.training.simulator import SimulationConfig, simulate

    path = write_transactions(simulate(SimulationConfig(n_customers=50, n_terminals=100, nb_days=30, seed=1)),
                              tmp_path / "small.csv")
    outcome = CliRunner().invoke(command, [str(path), "--folds", "4"])
    assert outcome.exit_code != 0
    assert "small.csv" in outcome.output and "data starts 2018-04-01" in outcome.output
    bad_anchor = CliRunner().invoke(command, [str(path), "--anchor", "soon"])
    assert bad_anchor.exit_code == 2 and "anchor: not a date" in bad_anchor.output


def test_handbook_test_set_of_a_fold_drops_known_cards_day_by_day():
    from fraudstream.detectors.schema import TX_FRAUD
    from fraudstream.training.evaluate import test_set

    settings = EvaluationSettings(folds=1, anchor="2018-04-08")
    fold = prequential_folds(FIRST, LAST, settings)[0]  # valid 04-01.., train 04-08..04-14, delay ..04-21, test ..
    rows = [  # (time, card, fraud)
        ("2018-04-10 12:00", 1, 1),  # training fraud: card 1 is known from the first test day
        ("2018-04-14 23:00", 2, 1),  # last training day: card 2 known from test day 0 as well
        ("2018-04-15 08:00", 3, 1),  # delay day 0: card 3 known from test day 1 (04-23)
        ("2018-04-21 08:00", 4, 1),  # delay day 6: known only from test day 7, after the test week
        ("2018-04-22 09:00", 1, 0), ("2018-04-22 09:30", 2, 0), ("2018-04-22 10:00", 3, 1),
        ("2018-04-22 11:00", 4, 1), ("2018-04-22 12:00", 5, 0),
        ("2018-04-23 09:00", 3, 0), ("2018-04-23 10:00", 4, 0), ("2018-04-23 11:00", 5, 1),
        ("2018-04-28 10:00", 4, 1),
    ]
    frame = pd.DataFrame({TRANSACTION_ID: np.arange(len(rows)), TX_DATETIME: pd.to_datetime([r[0] for r in rows]),
                          CUSTOMER_ID: [r[1] for r in rows], TX_FRAUD: [r[2] for r in rows]})
    kept = test_set(frame, fold, settings)
    assert kept[TRANSACTION_ID].tolist() == [6, 7, 8, 10, 11, 12]
    every = test_set(frame, fold, EvaluationSettings(folds=1, anchor="2018-04-08", protocol="all-cards"))
    assert every[TRANSACTION_ID].tolist() == list(range(4, 13))
    with pytest.raises(ProtocolError, match="protocol must be one of handbook, all-cards"):
        EvaluationSettings(protocol="cards")
