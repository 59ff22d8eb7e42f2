"""The live block list turns the rows of blocked cards into BLOCK by rule and leaves every other row alone."""

import numpy as np

from fraudstream.detectors.cascade.types import CascadeResult, Decision, Stage
from fraudstream.detectors.schema import TransactionBatch
from fraudstream.stream.core.block_list import REASON_LIVE_BLOCK_LIST, apply_block_list


def result_and_batch():
    batch = TransactionBatch(np.array([1, 2, 3]), np.array([10.0, 11.0, 12.0]), np.array([7, 8, 7]),
                             np.array([1, 1, 1]), np.array([5.0, 6.0, 7.0]))
    result = CascadeResult(decision=np.array([Decision.ALLOW, Decision.REVIEW, Decision.REVIEW], dtype=np.int8),
                           stage=np.array([Stage.LIGHT, Stage.HEAVY, Stage.HEAVY], dtype=np.int8),
                           risk=np.array([0.1, 0.6, 0.7]), light_score=np.array([0.1, 0.5, 0.6]),
                           anomaly_score=np.array([0.2, 0.3, 0.4]), heavy_score=np.array([np.nan, 0.6, 0.7]),
                           reasons=[("a",), ("b",), ()], model_version="m")
    return result, batch


def test_rows_of_blocked_cards_are_blocked_by_rule_with_their_scores_kept():
    result, batch = result_and_batch()
    out = apply_block_list(result, batch, {7})
    assert out.decision.tolist() == [Decision.BLOCK, Decision.REVIEW, Decision.BLOCK]
    assert out.stage.tolist() == [Stage.RULES, Stage.HEAVY, Stage.RULES]
    assert out.reasons == [(REASON_LIVE_BLOCK_LIST, "a"), ("b",), (REASON_LIVE_BLOCK_LIST,)]
    assert out.risk.tolist() == result.risk.tolist()
    assert result.decision.tolist() == [Decision.ALLOW, Decision.REVIEW, Decision.REVIEW]  # input untouched


def test_no_blocked_card_in_the_batch_changes_nothing():
    result, batch = result_and_batch()
    assert apply_block_list(result, batch, set()) is result
    assert apply_block_list(result, batch, {99}) is result
