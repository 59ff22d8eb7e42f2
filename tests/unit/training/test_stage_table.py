"""The per-stage table counts what each stage was given and settled, by hand-checked examples."""

import numpy as np
import pytest

from fraudstream.detectors.cascade.types import Decision, Stage
from fraudstream.training.stage_table import (
    format_metrics_stage_table,
    format_stage_table,
    stage_table,
    stage_table_to_metrics,
)

A, B, R = Decision.ALLOW, Decision.BLOCK, Decision.REVIEW
RU, LI, HE = Stage.RULES, Stage.LIGHT, Stage.HEAVY
#                      rule block, rule escalation, light block x2, light allow, heavy block, heavy review x2, allow
DECISION = np.array([B, R, B, B, A, B, R, R, A])
STAGE = np.array([RU, RU, LI, LI, LI, HE, HE, HE, HE])
HEAVY_RAN = np.array([False, True, False, False, False, True, True, True, True])
FRAUD = np.array([1, 1, 1, 0, 1, 1, 1, 0, 0])


def test_counts_precision_and_recall_per_stage():
    table = stage_table(DECISION, STAGE, HEAVY_RAN, FRAUD)
    assert (table.rows, table.frauds) == (9, 6)
    rules, light, heavy = table.stages
    assert (rules.routed, rules.decided, rules.block, rules.review) == (9, 1, 1, 1)
    assert (light.routed, light.decided, light.block, light.block_frauds) == (8, 3, 2, 1)
    assert (heavy.routed, heavy.decided, heavy.block, heavy.review, heavy.review_frauds) == (5, 2, 1, 2, 1)
    rows = {r["stage"]: r for r in table.to_json()}
    assert rows["LIGHT"]["block_precision"] == pytest.approx(0.5)
    assert rows["LIGHT"]["block_recall"] == pytest.approx(1 / 6)
    assert rows["HEAVY"]["review_precision"] == pytest.approx(0.5)
    assert rows["LIGHT"]["review_precision"] is None  # the light stage never reviews
    # every fraud BLOCKed or REVIEWed is counted once: the recalls add up to the cascade's
    caught = ((DECISION != A) & (FRAUD == 1)).sum() / FRAUD.sum()
    total = sum(r[f"{k}_recall"] or 0.0 for r in rows.values() for k in ("block", "review"))
    assert total == pytest.approx(caught)


def test_tables_of_folds_add_up_and_print():
    one = stage_table(DECISION, STAGE, HEAVY_RAN, FRAUD)
    two = one.plus(one)
    assert two.rows == 18 and two.stages[2].review == 4
    text = format_stage_table(two, "test")
    assert text.splitlines()[0] == "test (18 rows, 12 frauds)"
    assert [line.split()[0] for line in text.splitlines()[2:]] == ["RULES", "LIGHT", "HEAVY"]
    again = format_metrics_stage_table({"stage_table_valid": stage_table_to_metrics(one)})
    assert "HEAVY" in again and format_metrics_stage_table({}) == ""
