"""Metrics of the evaluation protocol on tiny hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fraudstream.detectors.cascade.types import CascadeResult, Decision, Stage
from fraudstream.training.metrics import (
    average_precision,
    card_precision_at_k,
    cascade_figures,
    caught_share,
    distinct_cards_per_day,
    roc_auc,
)


def test_roc_auc_counts_correctly_ordered_pairs():
    # positives 0.8, 0.4; negatives 0.6, 0.1 -> pairs (0.8>0.6, 0.8>0.1, 0.4<0.6, 0.4>0.1) = 3/4
    assert roc_auc([1, 0, 1, 0], [0.8, 0.6, 0.4, 0.1]) == pytest.approx(0.75)


def test_roc_auc_single_class_is_nan():
    assert math.isnan(roc_auc([0, 0, 0], [0.1, 0.2, 0.3]))


def test_average_precision_step_wise():
    # ranking: 0.9 (fraud), 0.8 (legit), 0.7 (fraud) -> precision at the frauds 1 and 2/3 -> AP = (1 + 2/3) / 2
    assert average_precision([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx((1 + 2 / 3) / 2)


def test_metrics_reject_bad_input_naming_it():
    with pytest.raises(ValueError, match="score.*row 1"):
        roc_auc([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="fraud.*row 2"):
        average_precision([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="differ in length"):
        roc_auc([0, 1, 1], [0.1, 0.2])


def test_card_precision_takes_max_per_card_and_divides_by_k():
    # one day; card 1: scores 0.2, 0.9 (one fraud); card 2: 0.8 legit; card 3: 0.1 fraud
    day = [0, 0, 0, 0]
    cust = [1, 1, 2, 3]
    fraud = [1, 0, 0, 1]
    score = [0.2, 0.9, 0.8, 0.1]
    cp = card_precision_at_k(day, cust, fraud, score, k=2)
    # top 2 cards: 1 (0.9, fraud), 2 (0.8, legit) -> 1/2
    assert cp.per_day.tolist() == [0.5]
    assert cp.mean == pytest.approx(0.5)
    assert cp.detected_cards.tolist() == [1]
    # k larger than the number of cards still divides by k: 2 compromised cards / 5
    assert card_precision_at_k(day, cust, fraud, score, k=5).mean == pytest.approx(2 / 5)


def test_card_precision_drops_cards_detected_on_earlier_days():
    # day 0: card 1 fraud, top-1 -> detected.  day 1: card 1 again highest, card 2 fraud second.
    day = [0, 0, 1, 1, 1]
    cust = [1, 2, 1, 2, 3]
    fraud = [1, 0, 1, 1, 0]
    score = [0.9, 0.5, 0.95, 0.6, 0.1]
    cp = card_precision_at_k(day, cust, fraud, score, k=1)
    # day 1 without card 1: card 2 (0.6, fraud) on top -> 1.0
    assert cp.per_day.tolist() == [1.0, 1.0]
    assert cp.detected_cards.tolist() == [1, 2]
    kept = card_precision_at_k(day, cust, fraud, score, k=1, remove_detected=False)
    # card 1 stays and is on top again on day 1 -> still 1.0, but it is detected twice
    assert kept.detected_cards.tolist() == [1, 1]


def test_card_precision_removal_changes_the_result():
    # day 1: card 1 (already detected) outranks legit card 2; the fraud of card 3 ranks last.
    day = [0, 1, 1, 1]
    cust = [1, 1, 2, 3]
    fraud = [1, 1, 0, 1]
    score = [0.9, 0.9, 0.5, 0.4]
    with_removal = card_precision_at_k(day, cust, fraud, score, k=2)
    without = card_precision_at_k(day, cust, fraud, score, k=2, remove_detected=False)
    # with removal day 1 ranks card 2 then 3 -> 1/2; without: 1 then 2 -> 1/2 as well but detects card 1
    assert with_removal.per_day.tolist() == [0.5, 0.5]
    assert with_removal.detected_cards.tolist() == [1, 3]
    assert without.detected_cards.tolist() == [1, 1]
    # k=1: with removal day 1 top is card 2 (legit) -> 0; without it is card 1 (fraud) -> 1
    assert card_precision_at_k(day, cust, fraud, score, k=1).per_day.tolist() == [1.0, 0.0]
    assert card_precision_at_k(day, cust, fraud, score, k=1, remove_detected=False).per_day.tolist() == [1.0, 1.0]


def test_card_precision_ties_broken_by_customer_id():
    cp = card_precision_at_k([0, 0], [7, 3], [1, 0], [0.5, 0.5], k=1)
    assert cp.per_day.tolist() == [0.0]  # card 3 wins the tie and is legit


def test_card_precision_rejects_bad_k():
    with pytest.raises(ValueError, match="k must be"):
        card_precision_at_k([0], [1], [0], [0.1], k=0)


def test_distinct_cards_per_day_counts_each_card_once():
    day = np.array([0, 0, 0, 1, 2])
    cust = np.array([5, 5, 6, 5, 9])
    sel = np.array([True, True, True, True, False])
    assert distinct_cards_per_day(day, cust, sel).tolist() == [2, 1, 0]


def test_caught_share_counts_block_and_review():
    dec = [Decision.BLOCK, Decision.REVIEW, Decision.ALLOW, Decision.BLOCK]
    assert caught_share(dec, [1, 1, 1, 0]) == pytest.approx(2 / 3)
    assert math.isnan(caught_share(dec, [0, 0, 0, 0]))


def _result(decision, stage):
    n = len(decision)
    return CascadeResult(
        decision=np.asarray(decision, dtype=np.int8),
        stage=np.asarray(stage, dtype=np.int8),
        risk=np.zeros(n),
        light_score=np.zeros(n),
        anomaly_score=np.zeros(n),
        heavy_score=np.full(n, np.nan),
        reasons=[()] * n,
        model_version="test",
    )


def test_cascade_figures_hand_computed():
    B, R, A = Decision.BLOCK, Decision.REVIEW, Decision.ALLOW
    result = _result(
        decision=[B, B, R, R, A, A, A, A],
        stage=[Stage.RULES, Stage.LIGHT, Stage.HEAVY, Stage.HEAVY, Stage.LIGHT, Stage.LIGHT, Stage.LIGHT, Stage.LIGHT],
    )
    fraud = [1, 0, 1, 0, 1, 0, 0, 0]
    amount = [10.0, 5.0, 20.0, 1.0, 70.0, 1.0, 1.0, 1.0]
    cust = [1, 2, 3, 3, 4, 5, 6, 7]
    day = [0, 0, 0, 1, 1, 1, 1, 1]
    fig = cascade_figures(result, fraud, amount, cust, day)
    assert fig.share_rules == pytest.approx(1 / 8)
    assert fig.share_light == pytest.approx(5 / 8)
    assert fig.share_heavy == pytest.approx(2 / 8)
    assert fig.share_blocked == pytest.approx(2 / 8)
    assert fig.share_reviewed == pytest.approx(2 / 8)
    assert fig.block_precision == pytest.approx(1 / 2)
    assert fig.block_recall == pytest.approx(1 / 3)
    # card 3 reviewed on day 0 and on day 1 -> 1 card each day
    assert fig.review_cards_per_day == pytest.approx(1.0)
    assert fig.fraud_caught_share == pytest.approx(2 / 3)
    assert fig.fraud_amount == pytest.approx(100.0)
    assert fig.fraud_amount_stopped == pytest.approx(30.0)
    assert fig.fraud_amount_stopped_share == pytest.approx(0.3)


def test_cascade_figures_nothing_blocked_gives_nan_precision():
    result = _result([Decision.ALLOW, Decision.ALLOW], [Stage.LIGHT, Stage.LIGHT])
    fig = cascade_figures(result, [1, 0], [3.0, 4.0], [1, 2], [0, 0])
    assert math.isnan(fig.block_precision)
    assert fig.block_recall == 0.0
    assert fig.fraud_amount_stopped_share == 0.0


def test_cascade_figures_rejects_misaligned_labels():
    result = _result([Decision.ALLOW, Decision.ALLOW], [Stage.LIGHT, Stage.LIGHT])
    with pytest.raises(ValueError, match="differ in length"):
        cascade_figures(result, [1, 0, 0], [3.0, 4.0], [1, 2], [0, 0])
