"""The review budget: per UTC day, the first ``cases_per_day`` cases opened keep their REVIEW, a card's later
REVIEWs join its open case, every other REVIEW becomes ALLOW with the budget's reason; a settled REVIEW closes its
card's case, so the card's next REVIEW opens (and counts) a new one; nothing else changes."""

import numpy as np
import pytest

from fraudstream.detectors.cascade.review_budget import (
    REASON_REVIEW_BUDGET,
    DayCases,
    apply_review_budget,
    close_cases,
    closed_entry,
    event_days,
    opened_entry,
)
from fraudstream.detectors.cascade.types import CascadeResult, Decision, Stage
from fraudstream.detectors.features.definition import DAY_S

A, B, R = Decision.ALLOW, Decision.BLOCK, Decision.REVIEW
DAY0 = 17_800 * DAY_S  # a UTC midnight


def result_of(decisions):
    n = len(decisions)
    return CascadeResult(decision=np.array(decisions, dtype=np.int8), stage=np.full(n, Stage.HEAVY, dtype=np.int8),
                         risk=np.linspace(0.1, 0.9, n), light_score=np.linspace(0.1, 0.9, n),
                         reasons=[(f"r{i}",) for i in range(n)], model_version="m")


def test_event_days_are_utc_days_since_the_epoch():
    assert event_days(np.array([DAY0, DAY0 + DAY_S - 0.001, DAY0 + DAY_S])).tolist() == [17_800, 17_800, 17_801]


def test_past_the_budget_a_new_card_is_allowed_and_a_card_with_a_case_keeps_its_review():
    decisions = [R, R, A, R, R, B, R]
    cards = np.array([1, 2, 3, 3, 1, 4, 5])
    times = DAY0 + np.arange(7) * 60.0
    result = result_of(decisions)
    cases: dict[int, DayCases] = {}
    out, entries, allowed = apply_review_budget(result, times, cards, cases, cases_per_day=2)
    assert out.decision.tolist() == [R, R, A, A, R, B, A]  # card 3 and 5 come after 1 and 2 filled the day
    assert entries == {17_800: [opened_entry(1), opened_entry(2)]}
    assert cases == {17_800: DayCases({1, 2}, 2)}
    assert allowed == 2
    assert out.reasons[3] == (REASON_REVIEW_BUDGET, "r3") and out.reasons[6] == (REASON_REVIEW_BUDGET, "r6")
    assert out.reasons[4] == ("r4",) and out.reasons[5] == ("r5",)
    assert out.stage.tolist() == result.stage.tolist() and out.risk.tolist() == result.risk.tolist()
    assert result.decision.tolist() == decisions  # the input is left as it was


def test_each_day_has_its_own_budget_and_the_stored_cases_count():
    cards = np.array([7, 8, 9, 8])
    times = np.array([DAY0 + 10, DAY0 + 20, DAY0 + DAY_S + 5, DAY0 + DAY_S + 6])
    cases = {17_800: DayCases({7}, 1), 17_801: DayCases({1}, 1)}
    out, entries, allowed = apply_review_budget(result_of([R, R, R, R]), times, cards, cases, cases_per_day=2)
    # day 17800: card 7 had its case, 8 opens the second; day 17801: 1 is there, 9 opens the second, 8 is over
    assert out.decision.tolist() == [R, R, R, A]
    assert entries == {17_800: [8], 17_801: [9]}
    assert allowed == 1


def test_a_closed_case_lets_the_cards_next_review_open_a_new_one_that_counts():
    cases = {17_800: DayCases.from_log([opened_entry(1), opened_entry(2)])}
    assert cases[17_800] == DayCases({1, 2}, 2)
    entries = close_cases(cases, [(17_800, 1), (17_800, 1), (17_800, 5), (17_799, 2)])
    assert entries == {17_800: [closed_entry(1)]}  # once; card 5 had no case, day 17799 was not read
    assert cases[17_800] == DayCases({2}, 2)
    out, entries, _ = apply_review_budget(result_of([R, R]), DAY0 + np.array([1.0, 2.0]), np.array([1, 2]), cases,
                                          cases_per_day=3)
    assert out.decision.tolist() == [R, R] and entries == {17_800: [opened_entry(1)]}
    assert cases[17_800] == DayCases({1, 2}, 3)
    out, _, allowed = apply_review_budget(result_of([R]), DAY0 + np.array([3.0]), np.array([9]), cases, 3)
    assert out.decision.tolist() == [A] and allowed == 1


def test_the_log_reads_back_as_the_day_it_describes():
    log = [opened_entry(4), opened_entry(4), opened_entry(6), closed_entry(4), closed_entry(4), opened_entry(4)]
    # a card opened twice at the same moment (two workers) counts once; closing twice closes once
    assert DayCases.from_log(log) == DayCases({4, 6}, 3)
    assert DayCases.from_log([]) == DayCases()


@pytest.mark.parametrize("budget", [0, -1])
def test_no_budget_changes_nothing(budget):
    result = result_of([R, R, R])
    out, entries, allowed = apply_review_budget(result, DAY0 + np.arange(3.0), np.array([1, 2, 3]), {}, budget)
    assert out is result and entries == {} and allowed == 0


def test_a_batch_without_reviews_is_returned_as_it_is():
    result = result_of([A, B])
    out, entries, allowed = apply_review_budget(result, DAY0 + np.arange(2.0), np.array([1, 2]), {}, 1)
    assert out is result and entries == {} and allowed == 0
