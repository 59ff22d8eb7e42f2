"""Block/allow lists, hard limits and the burst escalation, vectorized over a batch."""

import json

import numpy as np
import pytest

from fraudstream.detectors.cascade.types import Decision
from fraudstream.detectors.features.definition import FEATURE_NAMES
from fraudstream.detectors.rules import (
    BURST_FEATURE,
    DEFAULT_RULES_PATH,
    NO_RULE,
    RuleConfig,
    RulesConfigError,
    RuleSet,
)
from fraudstream.detectors.schema import TransactionBatch


def batch(customers, terminals, amounts):
    n = len(customers)
    return TransactionBatch(np.arange(n, dtype=np.int64), np.full(n, 1.6e9), np.asarray(customers, np.int64),
                            np.asarray(terminals, np.int64), np.asarray(amounts, np.float64))


def features(burst):
    X = np.zeros((len(burst), len(FEATURE_NAMES)))
    X[:, FEATURE_NAMES.index(BURST_FEATURE)] = burst
    return X


CONFIG = RuleConfig.from_dict({
    "blocked_customers": [1], "blocked_terminals": [7], "allowed_customers": [2, 3], "allowed_terminals": [],
    "max_amount": 1000.0, "burst_review_count": 10,
})


def test_rules_decide_with_block_over_allow_over_burst():
    b = batch([1, 2, 3, 4, 5, 6, 2], [0, 0, 7, 0, 0, 0, 0], [10, 10, 10, 1000, 10, 10, 10])
    out = RuleSet(CONFIG, FEATURE_NAMES).evaluate(features([1, 1, 1, 1, 12, 3, 50]), b)
    assert out.decision.tolist() == [Decision.BLOCK, Decision.ALLOW, Decision.BLOCK, Decision.BLOCK, NO_RULE,
                                     NO_RULE, Decision.ALLOW]
    assert out.escalate.tolist() == [False, False, False, False, True, False, False]
    assert out.reasons[0] == ("rule:blocked_customer",)
    assert out.reasons[1] == ("rule:allowed_customer",)
    assert out.reasons[2] == ("rule:blocked_terminal",)  # allowed customer 3, but the terminal is blocked
    assert out.reasons[3] == ("rule:max_amount",)
    assert out.reasons[4] == ("rule:burst",)
    assert out.reasons[5] == ()


def test_disabled_limits_never_fire():
    config = RuleConfig()
    out = RuleSet(config, FEATURE_NAMES).evaluate(features([100]), batch([1], [1], [1e8]))
    assert out.decision.tolist() == [NO_RULE] and not out.escalate.any()


def test_file_round_trip_and_shipped_default(tmp_path):
    path = tmp_path / "rules.json"
    CONFIG.to_json_file(path)
    assert RuleConfig.from_json_file(path) == CONFIG
    default = RuleConfig.from_json_file(DEFAULT_RULES_PATH)
    assert default.max_amount is not None and default.burst_review_count is not None


@pytest.mark.parametrize("data, key", [
    ({"blocked_customers": ["x"]}, "blocked_customers"),
    ({"max_amount": -1}, "max_amount"),
    ({"burst_review_count": 0}, "burst_review_count"),
    ({"max_amout": 5}, "max_amout"),
])
def test_bad_config_names_file_and_key(tmp_path, data, key):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RulesConfigError, match=key) as info:
        RuleConfig.from_json_file(path)
    assert str(path) in str(info.value)


def test_unreadable_json_is_reported(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(RulesConfigError, match="not valid JSON"):
        RuleConfig.from_json_file(path)
