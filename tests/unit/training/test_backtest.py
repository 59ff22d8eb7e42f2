"""The closed-loop backtest on a small simulated set: steps, block list, analysts, report, CLI."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import average_precision_score, roc_auc_score

from fraudstream.detectors.bundle import save_bundle
from fraudstream.detectors.cascade.review_budget import CASE_LOOKBACK_DAYS, REASON_REVIEW_BUDGET
from fraudstream.detectors.schema import (
    CUSTOMER_ID,
    TRANSACTION_ID,
    TX_DATETIME,
    TX_FRAUD,
    TX_FRAUD_SCENARIO,
    datetime_to_epoch_seconds,
)
from fraudstream.training.analysts import AnalystSettings
from fraudstream.training.backtest import (
    CARD_ID,
    REASON_BLOCKED_CARD,
    BacktestError,
    BacktestSettings,
    run_backtest,
)
from fraudstream.training.backtest_report import FIGURE_KEYS, _weighted_rank_metrics, compare, format_comparison
from fraudstream.training.datasets import write_transactions
from fraudstream.training.novel import (
    BACKTEST_DETECTORS,
    BacktestFamilies,
    backtest_families,
    format_backtest_families,
)
from fraudstream.training.scoring import OUTPUT_COLUMNS, score_frame
from fraudstream.training.simulator import NOVEL_SCENARIOS, SimulationConfig, simulate
from fraudstream.training.splits import known_compromised_period_rows
from fraudstream.training.train import TrainSettings, train_from_frame

START, END = pd.Timestamp("2018-05-01"), pd.Timestamp("2018-05-08")


@pytest.fixture(scope="module")
def trained():
    frame = simulate(SimulationConfig(n_customers=300, n_terminals=600, nb_days=40, seed=5))
    fast = TrainSettings(review_capacity=15, block_precision=0.99, imbalance="none", calibration="isotonic",
                         anomaly_methods=("IForest",),
                         anomaly_max_rows=1000, light_trees=20, heavy_trees=20, stacking_folds=2, valid_days=5)
    return frame, train_from_frame(frame, fast, end=START)


def test_decisions_do_not_depend_on_the_step_and_equal_batch_scoring_without_feedback(trained):
    frame, result = trained
    no_feedback = dict(analysts=None, block_on_chargeback=False)  # nobody puts a card on the block list
    fine = run_backtest(frame, result.cascade, BacktestSettings(START, END, step_s=600, **no_feedback)).decisions
    coarse = run_backtest(frame, result.cascade, BacktestSettings(START, END, step_s=86_400, **no_feedback)).decisions
    period = frame[(frame[TX_DATETIME] >= START) & (frame[TX_DATETIME] < END)]
    assert len(fine) == len(period) and set(fine[TRANSACTION_ID]) == set(period[TRANSACTION_ID])
    pd.testing.assert_frame_equal(fine, coarse)
    batch = score_frame(frame, _bundle(result), START, END).set_index(TRANSACTION_ID).loc[fine[TRANSACTION_ID]]
    assert (batch["DECISION"].to_numpy() == fine["DECISION"].to_numpy()).all()
    np.testing.assert_allclose(batch["RISK"].to_numpy(), fine["RISK"].to_numpy(), atol=1e-9)


def test_a_reissued_card_keeps_the_customers_history_so_scores_equal_batch_scoring(trained):
    frame, result = trained
    chargebacks_only = dict(analysts=None, block_on_chargeback=True)  # chargeback blocks reissue cards
    d = run_backtest(frame, result.cascade, BacktestSettings(START, END, **chargebacks_only)).decisions
    reissued = (d[CARD_ID] != d[CUSTOMER_ID]).to_numpy()
    assert reissued.sum() > 100, "chargebacks reissue some cards in the period"
    batch = score_frame(frame, _bundle(result), START, END).set_index(TRANSACTION_ID).loc[d[TRANSACTION_ID]]
    for column in ("LIGHT_SCORE", "ANOMALY_SCORE"):  # the models' scores are kept on rule blocks too
        np.testing.assert_allclose(batch[column].to_numpy(), d[column].to_numpy(), atol=1e-9, err_msg=column)


def _bundle(result):
    class Bundle:  # what score_frame reads of a loaded bundle
        cascade = result.cascade
        feature_config = result.cascade.feature_config
    return Bundle()


def test_analyst_verdicts_block_the_confirmed_cards_later_frauds(trained):
    frame, result = trained
    settings = BacktestSettings(START, END, analysts=AnalystSettings(capacity_cards_per_day=50, delay_s=3600))
    run = run_backtest(frame, result.cascade, settings)
    d = run.decisions
    assert run.verdicts, "the small model sends some cards to review"
    for v in run.verdicts:
        assert v.known_at_s == pytest.approx(v.case_opened_s + 3600) or v.known_at_s > v.case_opened_s + 3600
    by_list = d[[REASON_BLOCKED_CARD in r for r in d["REASONS"]]]
    assert len(by_list) > 0 and (by_list["DECISION"] == "BLOCK").all() and (by_list["STAGE"] == "RULES").all()
    assert (by_list[TX_FRAUD] == 1).all()  # reissue mode: only the old card's (fraudulent) use is blocked
    t = d[TX_DATETIME].astype("int64").to_numpy() / 1e9
    for card, since in run.blocked_at.items():
        rows = d[(d[CARD_ID] == card).to_numpy() & (t >= since)]
        assert (rows["DECISION"] == "BLOCK").all() and (rows[TX_FRAUD] == 1).all()
        later_legit = d[(d[CUSTOMER_ID] == card).to_numpy() & (t >= since) & (d[TX_FRAUD] == 0).to_numpy()]
        assert (later_legit[CARD_ID] != card).all(), "the customer's legitimate rows move to a new card"
    analyst_blocks = {v.card for v in run.verdicts if v.fraud}
    assert analyst_blocks <= {card for _, card, on in run.block_events if on}
    verdict_ids = {v.transaction_id for v in run.verdicts}
    assert verdict_ids <= {lab.transaction_id for lab in run.labels if lab.source == "analyst"}


def test_card_mode_blocks_every_transaction_of_a_listed_card_until_the_block_runs_out(trained):
    frame, result = trained
    settings = BacktestSettings(START, END, analysts=AnalystSettings(capacity_cards_per_day=50), block_mode="card",
                                block_days=2.0)
    run = run_backtest(frame, result.cascade, settings)
    d = run.decisions
    assert (d[CARD_ID] == d[CUSTOMER_ID]).all()
    t = d[TX_DATETIME].astype("int64").to_numpy() / 1e9
    lifted = [(at, card) for at, card, on in run.block_events if not on]
    assert lifted, "2-day blocks run out inside the week"
    for at, card, on in run.block_events:
        if on:
            end = min((a for a, c in lifted if c == card and a > at), default=np.inf)
            rows = d[(d[CARD_ID] == card).to_numpy() & (t >= at) & (t < end)]
            assert (rows["DECISION"] == "BLOCK").all()
            assert all(REASON_BLOCKED_CARD in r for r in rows["REASONS"])
    for at, card in lifted:
        after = d[(d[CARD_ID] == card).to_numpy() & (t >= at)]
        assert not any(REASON_BLOCKED_CARD in r for r in after["REASONS"]) or card in {
            c for a, c, on in run.block_events if on and a >= at}

def test_the_report_compares_the_same_model_with_and_without_analysts(trained):
    frame, result = trained
    settings = BacktestSettings(START, END, analysts=AnalystSettings(capacity_cards_per_day=50, delay_s=3600))
    run = run_backtest(frame, result.cascade, settings)
    d = run.decisions
    no_analysts_run = run_backtest(frame, result.cascade, BacktestSettings(START, END, analysts=None))
    assert (d["DECISION"] == "BLOCK").sum() >= (no_analysts_run.decisions["DECISION"] == "BLOCK").sum()
    comparison = compare([no_analysts_run, run],
                         ["chargebacks", "analysts"], n_bootstrap=20)
    assert set(comparison.figures[0]) == set(FIGURE_KEYS)
    diff, low, high = comparison.diff_ci[0]["fraud_blocked_share"]
    assert low <= diff <= high or np.isclose(low, high)
    text = format_comparison(comparison, [no_analysts_run, run])
    assert "analysts - chargebacks [95% CI]" in text and "AP (handbook test set)" in text
    assert "no analysts" in text and "50 cards/day" in text


def test_a_review_budget_bounds_the_cases_opened_a_day_and_the_report_counts_what_it_allowed(trained):
    frame, result = trained
    analysts = AnalystSettings(capacity_cards_per_day=50, delay_s=3600)
    free = run_backtest(frame, result.cascade, BacktestSettings(START, END, analysts=analysts))
    budget = max(1, min(_review_cards_per_day(free.decisions)) - 1)  # below every day's load without a budget
    run = run_backtest(frame, result.cascade, BacktestSettings(START, END, analysts=analysts, review_budget=budget))
    d = run.decisions
    # a card reviewed on one of the look-back days may be joining its open case: the other cards opened one each
    assert 0 < max(_new_review_cards_per_day(d)) <= budget < max(_review_cards_per_day(d))
    over = d[[REASON_REVIEW_BUDGET in r for r in d["REASONS"]]]
    assert len(over) > 0 and (over["DECISION"] == "ALLOW").all()
    figures = compare([free, run], ["free", "budget"], n_bootstrap=20).figures
    assert figures[0]["over_budget_per_day"] == 0
    assert figures[1]["over_budget_per_day"] == pytest.approx(len(over) / (END - START).days)
    # the analysts count a card again when it comes back after its case was worked: more cases than cards
    assert figures[1]["review_cases_per_day"] < figures[0]["review_cases_per_day"]


def _new_review_cards_per_day(decisions):
    """Cards REVIEWed a day that had no REVIEW on the look-back days before (a lower bound of the cases opened), on
    the days whose look-back days are in the run."""
    reviewed = decisions[decisions["DECISION"] == "REVIEW"]
    cards = reviewed.groupby(reviewed[TX_DATETIME].dt.floor("D"))[CARD_ID].agg(set)
    counts = []
    for day, today in cards.items():
        if day - pd.Timedelta(days=CASE_LOOKBACK_DAYS) < cards.index.min():  # its look-back days were warm-up
            continue
        earlier = set().union(*(cards.get(day - pd.Timedelta(days=k), set()) for k in range(1, CASE_LOOKBACK_DAYS + 1)))
        counts.append(len(today - earlier))
    return counts


def _review_cards_per_day(decisions):
    reviewed = decisions[decisions["DECISION"] == "REVIEW"]
    return reviewed.groupby(reviewed[TX_DATETIME].dt.floor("D"))[CARD_ID].nunique().tolist()


def test_weighted_rank_metrics_match_scikit_learn_with_ties_and_weights():
    rng = np.random.default_rng(0)
    score = np.round(rng.random(500), 2)  # many ties
    y = rng.random(500) < 0.2
    w = rng.integers(0, 3, 500).astype(float)
    order = np.argsort(-score, kind="stable")
    s = score[order]
    group_end = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    auc, ap = _weighted_rank_metrics(y[order], group_end, w[order])
    assert auc == pytest.approx(roc_auc_score(y, score, sample_weight=w))
    assert ap == pytest.approx(average_precision_score(y, score, sample_weight=w))


def test_period_test_set_drops_cards_with_a_fraud_8_to_14_days_earlier():
    day = np.array([0, 6, 10, 20, 20, 20, 25])
    card = np.array([1, 2, 3, 1, 2, 3, 3])
    fraud = np.array([1, 1, 1, 0, 0, 0, 0])
    keep = known_compromised_period_rows(day, card, fraud, first_test_day=20)
    # day 20 looks at frauds on days 6..12: cards 2 and 3; day 25 at days 11..17: none
    assert keep.tolist() == [False, False, False, True, False, False, True]


def test_cli_writes_score_columns_and_refuses_bad_input(trained, tmp_path):
    frame, result = trained
    data = write_transactions(frame, tmp_path / "tx.parquet")
    model_dir = save_bundle(result.cascade, tmp_path / "models", result.manifest_extras)
    from fraudstream.cli.main import cli

    out = tmp_path / "bt.csv"
    ok = CliRunner().invoke(cli, ["backtest", str(data), "--model", str(model_dir), "--challenger", str(model_dir),
                                  "--from", "2018-05-01", "--to", "2018-05-04", "--out", str(out),
                                  "--review-capacity", "20", "--bootstrap", "10"])
    assert ok.exit_code == 0, ok.output
    written = pd.read_csv(out)
    assert list(written.columns) == OUTPUT_COLUMNS and len(written) > 0
    assert (tmp_path / "bt.challenger1.csv").exists()
    assert "challenger1 - champion [95% CI]" in ok.output
    versus = CliRunner().invoke(cli, ["backtest", str(data), "--model", str(model_dir), "--from", "2018-05-01",
                                      "--to", "2018-05-03", "--out", str(out), "--versus-no-analysts",
                                      "--bootstrap", "10"])
    assert versus.exit_code == 0, versus.output
    assert "champion - no-analysts [95% CI]" in versus.output and (tmp_path / "bt.no-analysts.csv").exists()
    budget = CliRunner().invoke(cli, ["backtest", str(data), "--model", str(model_dir), "--from", "2018-05-01",
                                      "--to", "2018-05-03", "--out", str(out), "--review-budget", "1",
                                      "--versus-no-budget", "--bootstrap", "10"])
    assert budget.exit_code == 0, budget.output
    allowed = re.search(r"REVIEWs allowed over the review budget per day +([0-9.]+) +([0-9.]+)", budget.output)
    assert allowed is not None and float(allowed.group(1)) == 0 < float(allowed.group(2)), budget.output
    assert "champion - no-budget [95% CI]" in budget.output
    assert (pd.read_csv(out)["REASONS"].str.startswith(REASON_REVIEW_BUDGET)).any()
    assert not (pd.read_csv(tmp_path / "bt.no-budget.csv")["REASONS"].str.startswith(REASON_REVIEW_BUDGET)).any()
    alone = CliRunner().invoke(cli, ["backtest", str(data), "--model", str(model_dir), "--from", "2018-05-01",
                                     "--to", "2018-05-03", "--out", str(out), "--versus-no-budget"])
    assert alone.exit_code == 2 and "--review-budget" in alone.output
    negative = CliRunner().invoke(cli, ["backtest", str(data), "--model", str(model_dir), "--from", "2018-05-01",
                                        "--to", "2018-05-03", "--out", str(out), "--review-budget", "-1"])
    assert negative.exit_code == 2 and "--review-budget" in negative.output
    bad = CliRunner().invoke(cli, ["backtest", str(data), "--model", str(model_dir), "--from", "2018-05-01",
                                   "--to", "2018-05-04", "--out", str(out), "--labels-delay", "soon"])
    assert bad.exit_code == 2 and "not a duration" in bad.output
    outside = CliRunner().invoke(cli, ["backtest", str(data), "--model", str(model_dir), "--from", "2019-01-01",
                                       "--to", "2019-01-04", "--out", str(out)])
    assert outside.exit_code == 1 and "outside the data" in outside.output
    with pytest.raises(BacktestError, match="empty period"):
        BacktestSettings(END, START)


def test_batch_features_on_the_backtests_label_times_give_its_decisions(trained):
    """Batch, backtest (and so worker) parity for features that count a label from when it is known."""
    from fraudstream.detectors.features.batch import LABEL_KNOWN_AT
    from fraudstream.training.backtest_output import backtest_labels
    from fraudstream.training.label_model import with_fraud_known_at

    frame, result = trained
    settings = BacktestSettings(START, END, analysts=AnalystSettings(capacity_cards_per_day=50), block_mode="card",
                                block_days=0, block_on_chargeback=False)
    run = run_backtest(frame, result.cascade, settings)
    labels = backtest_labels(run)
    analyst_frauds = labels[(labels["source"] == "analyst") & (labels[TX_FRAUD] == 1)]
    assert len(analyst_frauds) > 0
    timed = with_fraud_known_at(frame, labels, result.cascade.feature_config.label_delay_s)
    by_id = timed.set_index(TRANSACTION_ID)
    verdict_s = datetime_to_epoch_seconds(analyst_frauds["known_at"])
    np.testing.assert_allclose(by_id.loc[analyst_frauds[TRANSACTION_ID], LABEL_KNOWN_AT].to_numpy(), verdict_s)
    assert timed.loc[timed[TX_FRAUD] == 0, LABEL_KNOWN_AT].isna().all()

    d = run.decisions
    batch = score_frame(timed, _bundle(result), START, END).set_index(TRANSACTION_ID).loc[d[TRANSACTION_ID]]
    np.testing.assert_allclose(batch["RISK"].to_numpy(), d["RISK"].to_numpy(), atol=1e-9)
    listed = np.array([REASON_BLOCKED_CARD in r for r in d["REASONS"]])
    assert listed.any()
    assert (batch["DECISION"].to_numpy()[~listed] == d["DECISION"].to_numpy()[~listed]).all()
    from fraudstream.detectors.features.batch import compute_features

    config = result.cascade.feature_config
    fresh = compute_features(timed, config)["TERMINAL_NB_FRAUDS_KNOWN_1DAY"]
    fixed = compute_features(frame, config)["TERMINAL_NB_FRAUDS_KNOWN_1DAY"]
    assert (fresh > fixed).any(), "an analyst's verdict counts within the day, a chargeback only 7 days later"


def test_cli_writes_the_backtests_labels_and_train_learns_from_their_times(trained, tmp_path):
    from fraudstream.cli.main import cli
    from fraudstream.training.labels import read_labels

    frame, result = trained
    data = write_transactions(frame, tmp_path / "tx.parquet")
    model_dir = save_bundle(result.cascade, tmp_path / "models", result.manifest_extras)
    labels_out = tmp_path / "labels.parquet"
    ok = CliRunner().invoke(cli, ["backtest", str(data), "--model", str(model_dir), "--from", "2018-05-01",
                                  "--to", "2018-05-04", "--out", str(tmp_path / "bt.parquet"), "--labels-out",
                                  str(labels_out), "--review-capacity", "30"])
    assert ok.exit_code == 0, ok.output
    labels = read_labels(labels_out)
    assert set(labels["source"]) == {"chargeback", "analyst"}
    fast = {"FRAUDSTREAM_TRAIN_LIGHT_TREES": "10", "FRAUDSTREAM_TRAIN_HEAVY_TREES": "10",
            "FRAUDSTREAM_TRAIN_ANOMALY_METHODS": "IForest", "FRAUDSTREAM_TRAIN_ANOMALY_MAX_ROWS": "500",
            "FRAUDSTREAM_TRAIN_STACKING_FOLDS": "2", "FRAUDSTREAM_TRAIN_IMBALANCE": "none",
            "FRAUDSTREAM_TRAIN_CALIBRATION": "isotonic"}
    trained_out = CliRunner(env=fast).invoke(cli, ["train", str(data), "--to", "2018-05-04", "--valid-days", "5",
                                                   "--label-times", str(labels_out), "--out", str(tmp_path / "v2")])
    assert trained_out.exit_code == 0, trained_out.output
    assert (tmp_path / "v2" / "LATEST").exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("TRANSACTION_ID,TX_FRAUD,source,known_at\n1,1,analyst,soon\n")
    refused = CliRunner(env=fast).invoke(cli, ["train", str(data), "--label-times", str(bad)])
    assert refused.exit_code == 1 and "known_at" in refused.output


def test_a_backtest_of_data_with_novel_attacks_reports_each_family(tmp_path):
    frame = simulate(SimulationConfig(n_customers=300, n_terminals=600, nb_days=40, seed=5,
                                      novel_start_date="2018-05-01"))
    fast = TrainSettings(review_capacity=15, imbalance="none", calibration="isotonic", anomaly_methods=("IForest",),
                         anomaly_max_rows=1000, light_trees=20, heavy_trees=20, stacking_folds=2, valid_days=5)
    result = train_from_frame(frame, fast, end=START)
    run = run_backtest(frame, result.cascade, BacktestSettings(START, END))
    figures = backtest_families(run.decisions)
    assert figures is not None and sorted(figures.families) == sorted(NOVEL_SCENARIOS)
    decisions = run.decisions
    flagged = decisions["DECISION"].isin(["BLOCK", "REVIEW"]).to_numpy()
    for family, lines in figures.families.items():
        attacked = decisions[TX_FRAUD_SCENARIO].to_numpy() == family
        assert list(lines) == list(BACKTEST_DETECTORS)
        assert lines["backtest"].transactions == attacked.sum()
        assert lines["backtest"].tx_flagged == pytest.approx(flagged[attacked].mean())
        assert lines["backtest"].cards == decisions.loc[attacked, CUSTOMER_ID].nunique()
        listed = decisions["REASONS"].map(lambda reasons: REASON_BLOCKED_CARD in reasons).to_numpy()
        assert figures.by_block_list[family] == pytest.approx(listed[attacked].mean())
    legit = decisions[TX_FRAUD].to_numpy() == 0
    assert figures.legit_flag_rate == pytest.approx(flagged[legit].mean())
    text = format_backtest_families(figures, "champion")
    assert "distant cash-out (held out)" in text and "anomaly detector alone" in text and "floors" in text
    assert "backtest against each model alone" in text
    assert backtest_families(decisions.drop(columns=[TX_FRAUD_SCENARIO])) is None
    known_only = decisions.assign(**{TX_FRAUD_SCENARIO: np.where(attacked, 0, decisions[TX_FRAUD_SCENARIO])})
    assert family not in (backtest_families(known_only) or BacktestFamilies(0, 0.0)).families

    data = write_transactions(frame, tmp_path / "tx.parquet")
    model_dir = save_bundle(result.cascade, tmp_path / "models", result.manifest_extras)
    from fraudstream.cli.main import cli

    report = tmp_path / "bt.json"
    ok = CliRunner().invoke(cli, ["backtest", str(data), "--model", str(model_dir), "--from", "2018-05-01",
                                  "--to", "2018-05-08", "--out", str(tmp_path / "bt.csv"), "--json", str(report)])
    assert ok.exit_code == 0, ok.output
    assert "novel attack families, champion" in ok.output
    payload = json.loads(report.read_text())
    assert set(payload["novel_families"]["champion"]["families"]) == {str(s) for s in NOVEL_SCENARIOS}
    versus = CliRunner().invoke(cli, ["backtest", str(data), "--model", str(model_dir), "--from", "2018-05-01",
                                      "--to", "2018-05-08", "--out", str(tmp_path / "bt.csv"), "--versus-no-anomaly",
                                      "--no-analysts", "--json", str(report), "--bootstrap", "10"])
    assert versus.exit_code == 0, versus.output
    assert "champion - no-anomaly [95% CI]" in versus.output and (tmp_path / "bt.no-anomaly.csv").exists()
    families = json.loads(report.read_text())["novel_families"]
    without, cascade = families["no-anomaly"]["families"], families["champion"]["families"]
    # the detector's reviews only add flags: the run without it flags no more of any family
    assert all(without[f]["backtest"]["tx_flagged"] <= cascade[f]["backtest"]["tx_flagged"] for f in cascade)
    assert any(without[f]["backtest"]["tx_flagged"] < cascade[f]["backtest"]["tx_flagged"] for f in cascade)
    both = CliRunner().invoke(cli, ["backtest", str(data), "--model", str(model_dir), "--from", "2018-05-01",
                                    "--to", "2018-05-08", "--out", str(tmp_path / "bt.csv"), "--versus-no-anomaly",
                                    "--versus-no-analysts"])
    assert both.exit_code == 2 and "one baseline a run" in both.output
