"""Novel-attack evaluation: the per-family figures, the legit-rate operating point, a small run, the CLI."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from fraudstream.cli.main import cli
from fraudstream.training.datasets import write_transactions
from fraudstream.training.evaluate import EvaluationSettings
from fraudstream.training.novel import (
    DETECTORS,
    FamilyFigures,
    NovelAttackError,
    beats_line,
    evaluate_novel,
    family_figures,
    flags_at_rate,
    format_novel_report,
)
from fraudstream.training.simulator import NOVEL_SCENARIOS, SimulationConfig, simulate
from fraudstream.training.train import TrainSettings

FAST = TrainSettings(review_capacity=15, imbalance="none", calibration="isotonic", anomaly_methods=("IForest",),
                     anomaly_max_rows=1000, light_trees=20, heavy_trees=20, stacking_folds=2)


def test_family_figures_count_transactions_cards_and_the_delay_to_the_first_flag():
    card = np.array([1, 1, 1, 2, 2, 3, 9])
    time_s = np.array([0.0, 3_600.0, 7_200.0, 100.0, 200.0, 50.0, 0.0])
    attacked = np.array([True, True, True, True, True, True, False])
    flagged = np.array([False, True, True, False, False, True, True])
    blocked = np.array([False, False, True, False, False, False, True])
    f = family_figures(flagged, blocked, attacked, card, time_s)
    assert (f.transactions, f.cards) == (6, 3)
    assert f.tx_flagged == pytest.approx(3 / 6) and f.tx_blocked == pytest.approx(1 / 6)
    assert f.cards_flagged == pytest.approx(2 / 3)
    # card 1: first attacked at 0 s, first flagged at 3,600 s; card 3: flagged at once; card 2 never
    assert f.hours_to_first_flag_median == pytest.approx(0.5) and f.hours_to_first_flag_mean == pytest.approx(0.5)
    empty = family_figures(flagged, blocked, np.zeros(7, dtype=bool), card, time_s)
    assert empty.transactions == 0 and np.isnan(empty.tx_flagged)


def test_flags_at_rate_never_flag_more_legit_rows_than_the_rate():
    rng = np.random.default_rng(0)
    score = rng.random(10_000)
    legit = rng.random(10_000) < 0.9
    for rate in (0.0, 0.001, 0.01, 0.2):
        flagged = flags_at_rate(score, legit, rate)
        assert flagged[legit].sum() <= rate * legit.sum()
        assert flagged[legit].sum() >= rate * legit.sum() - 1
        assert (score[flagged].min(initial=1.0) >= score[~flagged & legit].max()) or not flagged.any()
    ties = np.zeros(100)
    assert not flags_at_rate(ties, np.ones(100, dtype=bool), 0.5).any()  # ties: never more than the rate


@pytest.fixture(scope="module")
def attacked_frame():
    return simulate(SimulationConfig(n_customers=300, n_terminals=600, nb_days=40, seed=3,
                                     novel_start_date="2018-04-28"))


def test_every_family_is_reported_for_every_detector_at_the_cascade_legit_rate(attacked_frame):
    settings = EvaluationSettings(review_capacity=15)
    report = evaluate_novel(attacked_frame, settings, FAST, held_out=6)
    assert sorted(report.families) == sorted(NOVEL_SCENARIOS)
    for figures in report.families.values():
        assert list(figures) == list(DETECTORS)
        assert figures["cascade"].transactions > 0
        for f in figures.values():
            assert 0 <= f.tx_blocked <= f.tx_flagged <= 1
    rates = report.legit_flag_rate
    assert rates["light model alone"] <= rates["cascade"] and rates["anomaly detector alone"] <= rates["cascade"]
    assert rates["light model alone"] >= rates["cascade"] - 0.005
    assert list(report.known_fraud_flagged) == list(DETECTORS[:2])
    assert all(0 < share <= 1 for share in report.known_fraud_flagged.values())
    text = format_novel_report(report)
    assert "known frauds flagged (BLOCK or REVIEW)" in text
    assert beats_line(report.families, "cascade") in text
    assert "merchant breach (held out)" in text and "anomaly detector alone" in text
    assert report.anomaly_method == "IForest" and "anomaly detector: IForest" in text
    payload = report.to_json()
    assert payload["families"]["6"]["held_out"] and not payload["families"]["4"]["held_out"]
    stages = report.stage_table
    assert stages is not None and stages.rows == report.n_test and [s.stage for s in stages.stages] == \
        ["RULES", "LIGHT", "HEAVY"]
    flagged = sum(s.block + s.review for s in stages.stages)
    assert flagged == round(rates["cascade"] * (report.n_test - stages.frauds)) + sum(
        s.block_frauds + s.review_frauds for s in stages.stages)  # every flag is in one stage's row
    assert "per-stage table, cascade, the scored period" in text
    assert [row["stage"] for row in payload["stage_table"]] == ["RULES", "LIGHT", "HEAVY"]
    json.dumps(payload)


def test_a_review_budget_holds_the_review_cards_a_day_and_the_models_alone_to_the_rate_it_leaves(attacked_frame):
    settings = EvaluationSettings(review_capacity=15)
    free = evaluate_novel(attacked_frame, settings, FAST, held_out=6)
    budget = max(1, int(free.review_cards_per_day["cascade"] // 2))  # half the cards a day the cascade reviews
    held = evaluate_novel(attacked_frame, settings, FAST, held_out=6, review_budget=budget)
    assert free.review_budget == 0 and free.reviews_over_budget_per_day == {}
    assert held.review_budget == budget
    for name in DETECTORS[:2]:
        assert held.review_cards_per_day[name] <= budget  # open loop: a case is a card reviewed that day
    assert held.reviews_over_budget_per_day["cascade"] > 0
    assert held.legit_flag_rate["cascade"] < free.legit_flag_rate["cascade"]
    assert held.legit_flag_rate["anomaly detector alone"] <= held.legit_flag_rate["cascade"]
    for family, figures in held.families.items():  # allowing REVIEWs flags no more and blocks the same
        assert figures["cascade"].tx_flagged <= free.families[family]["cascade"].tx_flagged
        assert figures["cascade"].tx_blocked == free.families[family]["cascade"].tx_blocked
    with pytest.raises(NovelAttackError, match="review budget"):
        evaluate_novel(attacked_frame, settings, FAST, review_budget=-1)


def test_cli_evaluate_novel_writes_the_report_and_refuses_data_without_attacks(tmp_path, attacked_frame,
                                                                               monkeypatch):
    for name, value in (("IMBALANCE", "none"), ("CALIBRATION", "isotonic"), ("ANOMALY_METHODS", "IForest"),
                        ("LIGHT_TREES", "20"), ("HEAVY_TREES", "20"), ("STACKING_FOLDS", "2")):
        monkeypatch.setenv(f"FRAUDSTREAM_TRAIN_{name}", value)
    path = tmp_path / "novel.parquet"
    write_transactions(attacked_frame, path)
    out = tmp_path / "novel.json"
    result = CliRunner().invoke(cli, ["evaluate", str(path), "--novel", "--review-capacity", "15", "--json",
                                      str(out)])
    assert result.exit_code == 0, result.output
    assert "distant cash-out (held out)" in result.output
    assert json.loads(out.read_text())["held_out"] == 5

    budgeted = tmp_path / "budgeted.json"
    result = CliRunner().invoke(cli, ["evaluate", str(path), "--novel", "--review-capacity", "15",
                                      "--review-budget", "2", "--json", str(budgeted)])
    assert result.exit_code == 0, result.output
    assert "review budget 2 cases a day; REVIEWs allowed over it a day: cascade " in result.output
    payload = json.loads(budgeted.read_text())
    assert payload["review_budget"] == 2 and payload["review_cards_per_day"]["cascade"] <= 2
    result = CliRunner().invoke(cli, ["evaluate", str(path), "--review-budget", "2"])
    assert result.exit_code != 0 and "--review-budget goes with --novel" in result.output

    plain = tmp_path / "plain.parquet"
    write_transactions(attacked_frame[attacked_frame["TX_FRAUD_SCENARIO"] < 4], plain)
    result = CliRunner().invoke(cli, ["evaluate", str(plain), "--novel"])
    assert result.exit_code != 0 and "no novel attack in the data" in result.output
    with pytest.raises(NovelAttackError, match="held-out family"):
        evaluate_novel(attacked_frame, EvaluationSettings(), FAST, held_out=2)


def test_the_beats_line_names_the_families_a_system_does_not_beat_a_model_alone_on():
    def figures(share):
        return FamilyFigures(10, 2, share, 0.0, 1.0, 0.0, 0.0)
    families = {4: {"cascade": figures(0.9), "light model alone": figures(0.2), "anomaly detector alone": figures(0.9)},
                6: {"cascade": figures(0.8), "light model alone": figures(0.1), "anomaly detector alone": figures(0.7)}}
    line = beats_line(families, "cascade")
    assert "light model alone: beaten on card testing, merchant breach (every family)" in line
    assert "anomaly detector alone: beaten on merchant breach; NOT beaten on card testing" in line
