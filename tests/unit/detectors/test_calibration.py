"""Thresholds chosen on synthetic validation scores meet their constraints."""

from dataclasses import replace

import numpy as np
import pytest

from fraudstream.detectors.cascade.calibration import (
    CalibrationTargets,
    block_split,
    block_threshold,
    choose_thresholds,
    confident_allow_threshold,
    daily_cards,
    light_block_candidates,
    policy_report,
    precision_lower_bound,
    strongest_block_region,
)
from fraudstream.detectors.cascade.policy import NEVER, apply_policy
from fraudstream.detectors.cascade.types import Decision, Stage

DAY = 86_400.0


def synthetic(seed=0, n=40_000, days=7, fraud_rate=0.02, customers=3000):
    """Legitimate rows score low; half the frauds are clear to the light model, the rest only to the heavy one."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < fraud_rate).astype(np.int8)
    clear = (y == 1) & (rng.random(n) < 0.5)
    hard = (y == 1) & ~clear
    light = rng.beta(1, 20, n)
    light[clear] = 0.7 + 0.3 * rng.random(clear.sum())
    light[hard] = rng.beta(2, 8, hard.sum())
    heavy = np.clip(0.8 * light + 0.2 * rng.beta(1, 20, n), 0, 1)
    seen = hard & (rng.random(n) < 0.7)
    heavy[seen] = 0.5 + 0.5 * rng.random(seen.sum())
    anomaly = rng.random(n)
    anomaly[y == 1] = 1 - 0.05 * rng.random(int(y.sum()))
    timestamp = np.sort(rng.uniform(0, days * DAY, n)) + 1.5e9
    customer = rng.integers(0, customers, n)
    return light, anomaly, heavy, y, customer, timestamp


def test_block_threshold_is_the_lowest_meeting_the_precision():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    y = np.array([1, 1, 1, 0, 1, 0])
    t = block_threshold(scores, y, precision=0.75)
    assert t == 0.5  # 4 of 5 above 0.5 are frauds
    assert block_threshold(scores, y, precision=0.81) == 0.7
    assert block_threshold(scores, np.zeros(6), precision=0.5) == NEVER


def test_precision_lower_bound_is_wilsons_and_below_the_share():
    tp, count = np.array([0, 19, 95, 950, 20]), np.array([10, 20, 100, 1000, 20])
    bound = precision_lower_bound(tp, count, 0.9)
    share = tp / count
    assert np.all(bound <= share) and np.all(bound >= 0)
    # Wilson's lower end for 95 of 100 at z = 1.2816 (one-sided 90%), worked by hand: 0.9141
    assert bound[2] == pytest.approx(0.9141, abs=1e-4)
    assert bound[3] > bound[2]  # the same share measured on more rows is surer
    assert bound[4] == pytest.approx(1 / (1 + 1.2816 ** 2 / 20), abs=1e-4)  # all frauds: 1 / (1 + z^2 / n)
    assert np.array_equal(precision_lower_bound(tp, count, 0.0), share)


def test_block_threshold_with_confidence_needs_more_rows_and_more_precision():
    scores = np.linspace(1.0, 0.0, 400, endpoint=False)
    y = np.zeros(400, dtype=np.int8)
    y[:200] = 1
    y[[60, 120, 180]] = 0  # 97% frauds in the top 100, 98.5% in the top 200
    measured = block_threshold(scores, y, 0.95)
    bounded = block_threshold(scores, y, 0.95, confidence=0.9)
    assert bounded > measured  # the region the bound accepts is smaller
    region = scores >= bounded
    tp, n = y[region].sum(), region.sum()
    assert precision_lower_bound(np.array([tp]), np.array([n]), 0.9)[0] >= 0.95
    assert block_threshold(scores[:31], np.ones(31), 0.95, confidence=0.9) == NEVER  # 31 of 31: bound 0.9497
    assert block_threshold(scores[:32], np.ones(32), 0.95, confidence=0.9) == scores[31]


def test_each_stage_blocks_where_the_precision_bound_holds_on_validation():
    light, anomaly, heavy, y, customer, ts = synthetic(seed=1)
    targets = CalibrationTargets(review_capacity=10_000)
    decision, stage = apply_policy(light, anomaly, heavy, choose_thresholds(light, anomaly, heavy, y, customer, ts,
                                                                            targets))
    for by in (Stage.LIGHT, Stage.HEAVY):
        blocked = (decision == Decision.BLOCK) & (stage == by)
        assert blocked.sum() >= 32  # the least a region can hold at 95% with this bound
        bound = precision_lower_bound(np.array([y[blocked].sum()]), np.array([blocked.sum()]),
                                      targets.block_confidence)[0]
        assert bound >= targets.block_precision


def test_the_strongest_block_region_is_the_one_with_the_highest_bound():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.5])
    y = np.array([1, 1, 1, 1, 0, 1])
    region = strongest_block_region(scores, y, 0.9)
    # 4 of 4 (bound 1 / (1 + z^2 / 4) = 0.709) beats 3 of 3, 5 of 6 (the tie at 0.5 is cut whole) and the rest
    assert region == {"rows": 4, "frauds": 4, "bound": pytest.approx(1 / (1 + 1.2816 ** 2 / 4), abs=1e-4)}
    assert strongest_block_region(np.array([]), np.array([]), 0.9) == {"rows": 0, "frauds": 0, "bound": 0.0}


def test_block_threshold_does_not_split_ties():
    scores = np.array([0.9, 0.5, 0.5, 0.5])
    y = np.array([1, 1, 0, 0])
    assert block_threshold(scores, y, precision=0.6) == 0.9


def test_block_split_keeps_the_fewest_legit_blocked_within_the_loss():
    frauds, legit = np.array([442, 407, 434, 440]), np.array([23, 11, 13, 18])
    assert block_split(frauds, legit, loss=0.01) == 3  # 434 < 0.99 * 442; of 442 and 440, 18 legit < 23
    assert block_split(frauds, legit, loss=0.0) == 0
    assert block_split(frauds, legit, loss=0.1) == 1
    assert block_split(np.array([5, 5]), np.array([1, 1]), loss=0.0) == 0  # a tie: the lowest light threshold


def test_light_block_candidates_start_at_the_first_threshold():
    light, _, _, y, _, _ = synthetic()
    targets = CalibrationTargets()
    first = block_threshold(light, y, targets.block_precision, targets.min_block_rows, targets.block_confidence)
    candidates = light_block_candidates(light, y, targets)
    assert candidates[0] == first and np.all(np.diff(candidates) > 0)
    assert 1 < candidates.size <= targets.split_candidates + 1
    assert light_block_candidates(light, y, replace(targets, split_candidates=0)).tolist() == [first]
    assert light_block_candidates(light, np.zeros_like(y), targets).tolist() == [NEVER]


def split_synthetic(seed=0, n=40_000):
    """The light model's BLOCK region has an unsure lower part that the heavy model separates cleanly."""
    rng = np.random.default_rng(seed)
    light, anomaly, heavy, y, customer, ts = synthetic(seed, n)
    unsure = rng.random(n) < 0.004  # rows the light model scores just above its first threshold, 60% frauds
    y[unsure] = (rng.random(unsure.sum()) < 0.6).astype(np.int8)
    light[unsure] = 0.6 + 0.08 * rng.random(unsure.sum())
    heavy[unsure] = np.where(y[unsure] == 1, 0.9 + 0.1 * rng.random(unsure.sum()), 0.05 * rng.random(unsure.sum()))
    sure = (y == 1) & (light >= 0.7)
    heavy[sure] = 0.9 + 0.1 * rng.random(sure.sum())
    return light, anomaly, heavy, y, customer, ts


def test_the_heavy_stage_blocks_what_the_light_stage_is_unsure_of():
    light, anomaly, heavy, y, customer, ts = split_synthetic()
    targets = CalibrationTargets(review_capacity=40)
    first = block_threshold(light, y, targets.block_precision, targets.min_block_rows, targets.block_confidence)
    assert first < 0.68  # the first light region reaches into the unsure rows, carried by the sure ones
    th = choose_thresholds(light, anomaly, heavy, y, customer, ts, targets)
    unsplit = choose_thresholds(light, anomaly, heavy, y, customer, ts, replace(targets, split_candidates=0))
    assert unsplit.t_block_light == first and th.t_block_light > first
    split, kept = (policy_report(light, anomaly, heavy, y, customer, ts, t) for t in (th, unsplit))
    assert split["block_precision_light"] >= targets.block_precision
    assert split["block_precision_heavy"] >= targets.block_precision
    blocked = {name: report["block_rows"] * report["block_precision"] for name, report in
               (("split", split), ("kept", kept))}
    legit_blocked = {name: report["block_rows"] - blocked[name] for name, report in
                     (("split", split), ("kept", kept))}
    assert blocked["split"] >= (1 - targets.block_split_loss) * blocked["kept"]
    assert legit_blocked["split"] < legit_blocked["kept"]
    given = choose_thresholds(light, anomaly, heavy, y, customer, ts, targets, t_block_light=first)
    assert given.t_block_light == first


@pytest.mark.parametrize("statistic", ["max", "mean"])
def test_chosen_thresholds_meet_every_constraint(statistic):
    light, anomaly, heavy, y, customer, ts = synthetic()
    targets = CalibrationTargets(review_capacity=40, capacity_statistic=statistic, allow_catch_loss=0.02)
    th = choose_thresholds(light, anomaly, heavy, y, customer, ts, targets)
    report = policy_report(light, anomaly, heavy, y, customer, ts, th)
    assert th.t_block_light <= 1.0 and th.t_block_heavy <= 1.0  # both block regions exist on this data
    assert report["block_precision_light"] >= targets.block_precision
    assert report["block_precision_heavy"] >= targets.block_precision
    # the light ALLOW region costs at most allow_catch_loss of the frauds caught without it
    no_allow = choose_thresholds(light, anomaly, heavy, y, customer, ts, targets, t_allow_light=-1.0)
    baseline = policy_report(light, anomaly, heavy, y, customer, ts, no_allow)
    assert baseline["share_to_heavy"] > report["share_to_heavy"]

    def caught(r):
        return r["fraud_blocked_share"] + r["fraud_reviewed_share"]

    assert caught(report) >= (1 - targets.allow_catch_loss) * caught(baseline) - 1e-12
    assert th.t_allow_light > 0.0 and report["share_to_heavy"] < 0.5
    key = "review_cards_per_day_max" if statistic == "max" else "review_cards_per_day_mean"
    assert report[key] <= targets.review_capacity
    assert report["review_rows"] > 0
    assert th.t_review <= th.t_block_heavy
    assert th.t_anomaly_review >= targets.anomaly_review_min


def test_tighter_capacity_gives_fewer_reviews():
    light, anomaly, heavy, y, customer, ts = synthetic(seed=1)
    wide = choose_thresholds(light, anomaly, heavy, y, customer, ts, CalibrationTargets(review_capacity=80))
    narrow = choose_thresholds(light, anomaly, heavy, y, customer, ts, CalibrationTargets(review_capacity=10))
    r_wide = policy_report(light, anomaly, heavy, y, customer, ts, wide)
    r_narrow = policy_report(light, anomaly, heavy, y, customer, ts, narrow)
    assert r_narrow["review_cards_per_day_max"] <= 10 < r_wide["review_cards_per_day_max"]
    assert narrow.t_review >= wide.t_review


def test_the_review_regions_leave_the_headroom_free_on_validation():
    light, anomaly, heavy, y, customer, ts = synthetic(seed=1)
    loads = {}
    for headroom in (0.0, 0.5):
        targets = CalibrationTargets(review_capacity=40, review_headroom=headroom)
        assert targets.calibrated_capacity == 40 * (1 - headroom)
        th = choose_thresholds(light, anomaly, heavy, y, customer, ts, targets)
        loads[headroom] = policy_report(light, anomaly, heavy, y, customer, ts, th)["review_cards_per_day_max"]
        assert loads[headroom] <= targets.calibrated_capacity
    assert loads[0.5] <= 20 < loads[0.0] <= 40


def test_daily_cards_counts_distinct_customers_per_day():
    day = np.array([0, 0, 0, 1, 1])
    customer = np.array([5, 5, 6, 5, 7])
    assert daily_cards(np.ones(5, bool), customer, day, 3).tolist() == [2.0, 2.0, 0.0]
    assert daily_cards(np.zeros(5, bool), customer, day, 3).tolist() == [0.0, 0.0, 0.0]


def test_daily_cards_equals_a_count_of_distinct_pairs_on_unordered_data():
    rng = np.random.default_rng(11)
    day, customer = rng.integers(0, 5, 3000), rng.integers(0, 400, 3000) * 10**9  # large ids, rows in no order
    mask = rng.random(3000) < 0.4
    expected = np.zeros(6)
    for d, _customer in {(int(d), int(c)) for d, c in zip(day[mask], customer[mask])}:
        expected[d] += 1
    assert daily_cards(mask, customer, day, 6).tolist() == expected.tolist()


def test_the_heavy_stage_blocks_and_allows_where_confident_and_reviews_only_the_rest():
    light, anomaly, heavy, y, customer, ts = synthetic(seed=2)
    targets = CalibrationTargets(review_capacity=10_000, review_min_precision=0.2)  # capacity is not binding
    fallbacks: list[str] = []
    th = choose_thresholds(light, anomaly, heavy, y, customer, ts, targets, fallbacks=fallbacks)
    assert fallbacks == []
    decision, stage = apply_policy(light, anomaly, heavy, th)
    routed = stage == Stage.HEAVY
    by_heavy = routed & (heavy >= th.t_review)  # the heavy score's own REVIEW and BLOCK regions
    block = routed & (decision == Decision.BLOCK)
    review = by_heavy & (decision == Decision.REVIEW)
    allow = routed & (decision == Decision.ALLOW)
    assert block.any() and y[block].mean() >= targets.block_precision
    assert review.any() and y[review].mean() >= targets.review_min_precision
    # with unlimited capacity the heavy model still ALLOWs the rows it is confident about: not everything is REVIEW
    assert allow.sum() > 0.3 * routed.sum()
    assert y[allow].mean() < targets.review_min_precision


def test_too_few_routed_frauds_fall_back_to_the_documented_defaults():
    light, anomaly, heavy, y, customer, ts = synthetic(seed=3, n=3000, fraud_rate=0.004)
    targets = CalibrationTargets(review_capacity=10_000)
    fallbacks: list[str] = []
    th = choose_thresholds(light, anomaly, heavy, y, customer, ts, targets, fallbacks=fallbacks)
    assert th.t_block_heavy == targets.default_block_heavy
    assert th.t_review >= targets.default_review and th.t_review <= th.t_block_heavy
    assert any("t_block_heavy" in line and "fewer than 20" in line for line in fallbacks)
    decision, stage = apply_policy(light, anomaly, heavy, th)
    routed = stage == Stage.HEAVY
    assert (routed & (decision == Decision.ALLOW)).any()  # not everything routed goes to REVIEW


def test_no_split_leaves_light_blocks_to_a_heavy_threshold_nobody_measured():
    rng = np.random.default_rng(5)
    n = 4000
    light, heavy, y = rng.beta(1, 30, n), rng.uniform(0.0, 0.05, n), np.zeros(n, dtype=np.int8)
    y[:40], light[:40], heavy[:40] = 1, rng.uniform(0.9, 1.0, 40), rng.uniform(0.97, 1.0, 40)  # sure frauds
    light[40:45], y[40:43], heavy[40:43] = rng.uniform(0.6, 0.68, 5), 1, 0.99  # unsure: 3 frauds, 2 legit
    anomaly, customer = rng.random(n) * 0.9, np.arange(n)
    ts = 1.5e9 + np.sort(rng.uniform(0, 7 * DAY, n))
    # the measured precision: the unsure rows (43 frauds of 45 with the sure ones) then belong to the first region
    targets = CalibrationTargets(review_capacity=10_000, block_confidence=0.0)
    first = block_threshold(light, y, targets.block_precision, targets.min_block_rows, targets.block_confidence)
    assert first <= 0.68 and light_block_candidates(light, y, targets).size > 1
    fallbacks: list[str] = []
    th = choose_thresholds(light, anomaly, heavy, y, customer, ts, targets, fallbacks=fallbacks)
    # splits that route fewer than 20 frauds would block the unsure frauds at the default heavy threshold with no
    # legitimate row blocked; the chosen one routes enough frauds to measure its heavy threshold
    assert th.t_block_light > first and fallbacks == []
    report = policy_report(light, anomaly, heavy, y, customer, ts, th)
    assert report["block_precision_heavy"] >= targets.block_precision


def test_anomaly_reviews_fill_the_capacity_the_heavy_stage_leaves_up_to_the_legit_flag_cap():
    light, anomaly, heavy, y, customer, ts = synthetic(seed=4)
    legit = y == 0
    common = {"review_capacity": 300, "anomaly_review_min": 0.9, "anomaly_review_share": 0.05}
    kept = choose_thresholds(light, anomaly, heavy, y, customer, ts,
                             CalibrationTargets(**common, max_legit_flag_rate=0.0))
    filled_targets = CalibrationTargets(**common, max_legit_flag_rate=0.02)
    filled = choose_thresholds(light, anomaly, heavy, y, customer, ts, filled_targets,
                               t_allow_light=kept.t_allow_light)
    # for the same light stage the heavy thresholds are the same; only the anomaly REVIEW threshold moves, down
    assert (filled.t_block_heavy, filled.t_review) == (kept.t_block_heavy, kept.t_review)
    assert filled_targets.anomaly_review_min <= filled.t_anomaly_review < kept.t_anomaly_review
    r_kept = policy_report(light, anomaly, heavy, y, customer, ts, kept)
    r_filled = policy_report(light, anomaly, heavy, y, customer, ts, filled)
    assert r_kept["review_cards_per_day_max"] < r_filled["review_cards_per_day_max"]
    assert r_filled["review_cards_per_day_max"] <= filled_targets.calibrated_capacity
    decision, stage = apply_policy(light, anomaly, heavy, filled)
    flagged = decision != Decision.ALLOW
    assert flagged[legit].mean() <= filled_targets.max_legit_flag_rate
    # the cap binds: one more anomaly step down (among the rows the heavy stage does not block) would flag too
    # many legitimate rows or overflow the capacity
    reviewable = (stage == Stage.HEAVY) & (decision != Decision.BLOCK)
    lower = np.max(anomaly[reviewable & (anomaly < filled.t_anomaly_review)])
    decision_lower, _ = apply_policy(light, anomaly, heavy, replace(filled, t_anomaly_review=float(lower)))
    over = (decision_lower != Decision.ALLOW)[legit].mean() > filled_targets.max_legit_flag_rate
    r_lower = policy_report(light, anomaly, heavy, y, customer, ts, replace(filled, t_anomaly_review=float(lower)))
    assert (over or r_lower["review_cards_per_day_max"] > filled_targets.calibrated_capacity
            or lower < filled_targets.anomaly_review_min)


def test_a_tighter_legit_flag_cap_fills_less():
    light, anomaly, heavy, y, customer, ts = synthetic(seed=5)
    common = {"review_capacity": 300, "anomaly_review_min": 0.9, "anomaly_review_share": 0.05}
    loose = choose_thresholds(light, anomaly, heavy, y, customer, ts,
                              CalibrationTargets(**common, max_legit_flag_rate=0.03))
    tight = choose_thresholds(light, anomaly, heavy, y, customer, ts,
                              CalibrationTargets(**common, max_legit_flag_rate=0.015))
    assert loose.t_anomaly_review < tight.t_anomaly_review
    r_loose = policy_report(light, anomaly, heavy, y, customer, ts, loose)
    r_tight = policy_report(light, anomaly, heavy, y, customer, ts, tight)
    assert r_tight["review_rows"] < r_loose["review_rows"]


def test_confident_allow_threshold_is_the_highest_keeping_the_fraud_share_below_it():
    scores = np.array([0.1, 0.2, 0.2, 0.3, 0.4, 0.5, 0.6])
    y = np.array([0, 0, 1, 0, 0, 1, 1])
    # below 0.2: 0 of 1; below 0.3: 1 of 3 (the tie at 0.2 goes in whole); below 0.5: 1 of 5; below 0.6: 2 of 6
    assert confident_allow_threshold(scores, y, 0.0) == 0.2
    assert confident_allow_threshold(scores, y, 0.2) == 0.5
    assert confident_allow_threshold(scores, y, 0.34) == 0.6
    assert confident_allow_threshold(scores, y, 1.0) > 0.6  # every row
    assert confident_allow_threshold(np.array([0.3]), np.array([1]), 0.5) == -1.0
    assert confident_allow_threshold(np.array([]), np.array([]), 0.5) == -1.0


def test_a_heavy_allow_bound_lets_the_heavy_stage_settle_a_fraud_rich_band():
    light, anomaly, heavy, y, customer, ts = synthetic(seed=2)
    # the whole band qualifies; the light stage blocks all it can (no split, measured precision), as the bound was
    # measured
    targets = CalibrationTargets(review_capacity=10_000, review_min_precision=0.01, split_candidates=0,
                                 block_confidence=0.0)
    bounded = replace(targets, heavy_allow_fraud_rate=0.005)
    plain = choose_thresholds(light, anomaly, heavy, y, customer, ts, targets)
    th = choose_thresholds(light, anomaly, heavy, y, customer, ts, bounded)
    assert th.t_review > plain.t_review
    decision, stage = apply_policy(light, anomaly, heavy, th, use_anomaly=False)
    allowed = (stage == Stage.HEAVY) & (decision == Decision.ALLOW)
    assert allowed.any() and y[allowed].mean() <= 0.005
