"""The review budget: per UTC day, the first ``cases_per_day`` cases opened keep their REVIEW, a card's later
REVIEWs join its open case, every other REVIEW becomes ALLOW with the budget's reason; an analyst's verdict closes
the card's case from its ``known_at``, so the card's next REVIEW opens (and counts) a new one, whichever of the two
came first; nothing else changes."""

import numpy as np
import pytest

from fraudstream.detectors.cascade.review_budget import (
    CASE_LOOKBACK_DAYS,
    REASON_REVIEW_BUDGET,
    DayCases,
    apply_review_budget,
    case_logs,
    case_open,
    closed_entry,
    event_days,
    opened_entry,
    record_verdicts,
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
    assert entries == {17_800: [opened_entry(1, DAY0), opened_entry(2, DAY0 + 60)]}
    assert cases[17_800].opened == 2 and cases[17_800].last_open == {1: DAY0, 2: DAY0 + 60}
    assert allowed == 2
    assert out.reasons[3] == (REASON_REVIEW_BUDGET, "r3") and out.reasons[6] == (REASON_REVIEW_BUDGET, "r6")
    assert out.reasons[4] == ("r4",) and out.reasons[5] == ("r5",)
    assert out.stage.tolist() == result.stage.tolist() and out.risk.tolist() == result.risk.tolist()
    assert result.decision.tolist() == decisions  # the input is left as it was


def test_each_day_has_its_own_budget_and_the_stored_cases_count():
    cards = np.array([7, 8, 9, 10])
    times = np.array([DAY0 + 10, DAY0 + 20, DAY0 + DAY_S + 5, DAY0 + DAY_S + 6])
    cases = {17_800: DayCases.from_log([opened_entry(7, DAY0)]),
             17_801: DayCases.from_log([opened_entry(1, DAY0 + DAY_S)])}
    out, entries, allowed = apply_review_budget(result_of([R, R, R, R]), times, cards, cases, cases_per_day=2)
    # day 17800: card 7 had its case, 8 opens the second; day 17801: 1 is there, 9 opens the second, 10 is over
    assert out.decision.tolist() == [R, R, R, A]
    assert entries == {17_800: [opened_entry(8, DAY0 + 20)], 17_801: [opened_entry(9, DAY0 + DAY_S + 5)]}
    assert allowed == 1


def test_a_verdict_closes_the_case_from_its_known_at_so_the_cards_next_review_opens_a_new_one():
    cases: dict[int, DayCases] = {}
    verdict = [(DAY0 + 3600.0, 17_800, 1)]  # known an hour in, on card 1's transaction of the day
    # the verdict came with the rows (or before the transaction it is about): the order does not matter
    out, entries, _ = apply_review_budget(result_of([R, R, R]), DAY0 + np.array([10.0, 1800.0, 7200.0]),
                                          np.array([1, 1, 1]), cases, cases_per_day=5, verdicts=verdict)
    assert out.decision.tolist() == [R, R, R]
    assert entries == {17_800: [closed_entry(1, DAY0 + 3600.0), opened_entry(1, DAY0 + 10.0),
                                opened_entry(1, DAY0 + 7200.0)]}  # joined at 00:30, a new case at 02:00
    assert cases[17_800].opened == 2
    out, _, allowed = apply_review_budget(result_of([R, R]), DAY0 + np.array([7300.0, 7400.0]), np.array([1, 9]),
                                          cases, cases_per_day=2)
    assert out.decision.tolist() == [R, A] and allowed == 1  # card 1 joins its new case; the day is full


def test_a_case_stays_open_into_the_next_days_until_a_verdict_closes_it():
    day = 17_800
    cases = {day: DayCases.from_log([opened_entry(1, DAY0 + 80_000.0), opened_entry(2, DAY0 + 100.0)]),
             day + 1: DayCases.from_log([opened_entry(3, DAY0 + DAY_S)])}
    late = DAY0 + DAY_S + np.array([10.0, 20.0, 30.0])
    # card 1's case from late yesterday is open: it joins it, not counted; card 5 takes the day's second case
    verdicts = [(DAY0 + DAY_S + 15.0, day + 1, 2)]  # card 2's case closes (a verdict on a transaction of today)
    out, entries, allowed = apply_review_budget(result_of([R, R, R]), late, np.array([1, 5, 2]), cases,
                                                cases_per_day=2, verdicts=verdicts)
    assert out.decision.tolist() == [R, R, A] and allowed == 1  # card 2 needs a new case: the day is full
    assert entries == {day + 1: [closed_entry(2, DAY0 + DAY_S + 15.0), opened_entry(5, DAY0 + DAY_S + 20.0)]}
    # past the look-back days a case no longer carries over
    later = DAY0 + (CASE_LOOKBACK_DAYS + 1) * DAY_S + 5.0
    assert case_open(cases, day + CASE_LOOKBACK_DAYS, 1, later - DAY_S)
    assert not case_open(cases, day + CASE_LOOKBACK_DAYS + 1, 1, later)
    out, entries, _ = apply_review_budget(result_of([R]), np.array([later]), np.array([1]), cases, cases_per_day=2)
    assert entries == {day + CASE_LOOKBACK_DAYS + 1: [opened_entry(1, later)]}


def test_the_logs_outlive_the_days_that_may_join_their_cases():
    from fraudstream.stream.state.keys import REVIEW_CASES_TTL_S

    assert REVIEW_CASES_TTL_S > CASE_LOOKBACK_DAYS * DAY_S


def test_verdicts_alone_are_recorded_for_the_rows_that_come_later():
    cases = {17_800: DayCases.from_log([opened_entry(3, DAY0)])}
    entries = record_verdicts(cases, [(DAY0 + 100.0, 17_800, 3)])
    assert entries == {17_800: [closed_entry(3, DAY0 + 100.0)]}
    assert cases[17_800].is_open(3, DAY0 + 99.0) and not cases[17_800].is_open(3, DAY0 + 100.0)


def test_the_logs_rebuilt_from_decisions_and_verdicts_are_what_the_budget_wrote():
    rows = DAY0 + np.array([10.0, 20.0, 5000.0, 6000.0, DAY_S + 1.0])
    cards = np.array([1, 2, 1, 3, 1])
    verdicts = [(DAY0 + 3600.0, 17_800, 1)]
    cases: dict[int, DayCases] = {}
    out, written, _ = apply_review_budget(result_of([R, R, R, R, R]), rows, cards, cases, 3, verdicts)
    assert out.decision.tolist() == [R, R, R, A, R]  # card 1 reopens after its verdict: day 17800 is full
    kept = out.decision == R
    rebuilt = case_logs(zip(rows[kept].tolist(), cards[kept].tolist()), verdicts)
    # the last row joined card 1's case of the day before: its own day opened nothing, so it has no log
    assert cases[17_801] == DayCases() and 17_801 not in rebuilt
    assert {day: DayCases.from_log(log) for day, log in rebuilt.items()} == {17_800: cases[17_800]}
    assert rebuilt == written


def test_the_log_reads_back_as_the_day_it_describes():
    log = [opened_entry(4, DAY0), opened_entry(4, DAY0), opened_entry(6, DAY0 + 5), closed_entry(4, DAY0 + 50),
           opened_entry(4, DAY0 + 60)]
    # a card opened twice at the same moment (two workers) counts once; after its verdict it opens again
    day = DayCases.from_log(log)
    assert day.opened == 3 and day.last_open == {4: DAY0 + 60, 6: DAY0 + 5}
    assert day.is_open(4, DAY0 + 70) and day.is_open(6, DAY0 + 70) and not day.is_open(5, DAY0)
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
