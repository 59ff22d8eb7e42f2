"""Routing of hand-built score arrays through every branch of the policy."""

import numpy as np
import pytest

from fraudstream.detectors.cascade.policy import NEVER, Thresholds, apply_policy, route_light, threshold_reasons
from fraudstream.detectors.cascade.types import Decision, Stage

TH = Thresholds(t_block_light=0.9, t_allow_light=0.1, t_anomaly_allow=0.95, t_block_heavy=0.8, t_review=0.5,
                t_anomaly_review=0.99)

# row: light, anomaly, heavy -> expected decision, stage
CASES = [
    (0.95, 0.10, np.nan, Decision.BLOCK, Stage.LIGHT),    # light block
    (0.05, 0.50, np.nan, Decision.ALLOW, Stage.LIGHT),    # light allow
    (0.05, 0.97, 0.10, Decision.ALLOW, Stage.HEAVY),      # low light but anomalous: heavy decides, allows
    (0.50, 0.10, 0.85, Decision.BLOCK, Stage.HEAVY),      # heavy block
    (0.50, 0.10, 0.60, Decision.REVIEW, Stage.HEAVY),     # heavy review
    (0.50, 0.995, 0.20, Decision.REVIEW, Stage.HEAVY),    # anomaly review
    (0.50, 0.10, 0.20, Decision.ALLOW, Stage.HEAVY),      # heavy allow
    (0.10, 0.95, np.nan, Decision.ALLOW, Stage.LIGHT),    # boundaries are inclusive for allow
    (0.90, 0.99, np.nan, Decision.BLOCK, Stage.LIGHT),    # and for block
]


def arrays():
    light = np.array([c[0] for c in CASES])
    anomaly = np.array([c[1] for c in CASES])
    heavy = np.array([c[2] for c in CASES])
    return light, anomaly, heavy


def test_every_branch_routes_as_documented():
    light, anomaly, heavy = arrays()
    decision, stage = apply_policy(light, anomaly, heavy, TH)
    assert decision.tolist() == [int(c[3]) for c in CASES]
    assert stage.tolist() == [int(c[4]) for c in CASES]


def test_rules_come_first_and_escalation_turns_allow_into_review():
    light, anomaly, heavy = arrays()
    rule = np.full(len(CASES), -1, dtype=np.int8)
    rule[0] = Decision.ALLOW  # allow-listed although the light model would block
    rule[1] = Decision.BLOCK  # block-listed although the light model would allow
    escalate = np.zeros(len(CASES), dtype=bool)
    escalate[[3, 6]] = True  # heavy block stays block; heavy allow becomes review
    decision, stage = apply_policy(light, anomaly, heavy, TH, rule, escalate)
    assert (decision[0], stage[0]) == (Decision.ALLOW, Stage.RULES)
    assert (decision[1], stage[1]) == (Decision.BLOCK, Stage.RULES)
    assert (decision[3], stage[3]) == (Decision.BLOCK, Stage.HEAVY)
    assert (decision[6], stage[6]) == (Decision.REVIEW, Stage.RULES)


def test_only_undecided_rows_go_to_the_heavy_model():
    light, anomaly, _ = arrays()
    routing = route_light(light, anomaly, TH)
    assert routing.to_heavy.tolist() == [not np.isnan(c[2]) for c in CASES]


def test_without_anomaly_the_policy_ignores_the_anomaly_score():
    light, anomaly, heavy = arrays()
    heavy = np.where(np.isnan(heavy), 0.2, heavy)
    decision, stage = apply_policy(light, anomaly, heavy, TH, use_anomaly=False)
    assert (decision[2], stage[2]) == (Decision.ALLOW, Stage.LIGHT)  # anomalous row allowed by light alone
    assert decision[5] == Decision.ALLOW  # anomaly review gone


def test_thresholds_above_one_never_fire():
    light = np.array([1.0, 0.0])
    anomaly = np.array([1.0, 1.0])
    off = Thresholds(t_block_light=NEVER, t_allow_light=-1.0, t_anomaly_allow=1.0, t_block_heavy=NEVER,
                     t_review=NEVER, t_anomaly_review=NEVER)
    decision, stage = apply_policy(light, anomaly, np.array([1.0, 1.0]), off)
    assert decision.tolist() == [Decision.ALLOW, Decision.ALLOW]
    assert stage.tolist() == [Stage.HEAVY, Stage.HEAVY]


def test_reasons_name_the_threshold_that_fired():
    light, anomaly, heavy = arrays()
    decision, stage = apply_policy(light, anomaly, heavy, TH)
    reasons = threshold_reasons(decision, stage, light, anomaly, heavy, TH)
    assert reasons[0].startswith("light_block:")
    assert reasons[1].startswith("light_allow:")
    assert reasons[3].startswith("heavy_block:")
    assert reasons[4].startswith("heavy_review:")
    assert reasons[5].startswith("anomaly_review:")
    assert reasons[6].startswith("heavy_allow:")


def test_thresholds_round_trip_and_reject_unknown_keys():
    assert Thresholds.from_dict(TH.to_dict()) == TH
    with pytest.raises(ValueError, match="t_blok"):
        Thresholds.from_dict({"t_blok": 0.5})
