"""Simulated analysts: one case per card, priority by expected loss and age, daily capacity, delay, expiry."""

import numpy as np
import pytest

from fraudstream.training.analysts import AnalystSettings, ReviewItem, SimulatedAnalysts, case_priority

DAY, HOUR = 86_400.0, 3_600.0
T0 = 17_600 * DAY  # a midnight


def item(tid, card, t, risk=0.5, amount=100.0, fraud=True):
    return ReviewItem(tid, card, 900 + card, t, risk, amount, fraud)


def test_priority_is_expected_loss_raised_with_age():
    p = case_priority(np.array([100.0, 100.0, 150.0, 100.0]), np.array([0.0, 4 * HOUR, 0.0, 8 * HOUR]),
                      sla_s=4 * HOUR)
    assert p.tolist() == [100.0, 200.0, 150.0, 400.0]  # doubles every 4 h, as the review workbench orders


def test_a_card_is_one_case_and_its_verdict_comes_after_the_delay():
    analysts = SimulatedAnalysts(AnalystSettings(capacity_cards_per_day=10, delay_s=HOUR))
    analysts.add([item(1, 7, T0 + 100), item(2, 7, T0 + 200, fraud=False)], step_end_s=T0 + 300)
    assert analysts.pending_cases == 1
    assert analysts.next_event_s(T0 + 300) == T0 + 100 + HOUR
    assert analysts.work(T0 + 100 + HOUR - 1) == []
    verdicts = analysts.work(T0 + 100 + HOUR)
    assert [(v.transaction_id, v.fraud, v.known_at_s, v.case_opened_s) for v in verdicts] == [
        (1, True, T0 + 100 + HOUR, T0 + 100), (2, False, T0 + 100 + HOUR, T0 + 100)]
    assert analysts.pending_cases == 0 and analysts.log.queue_age_s == [HOUR]
    assert analysts.log.opened_per_day == {17_600: 1} and analysts.log.worked_per_day == {17_600: 1}


def test_a_case_is_never_ready_inside_the_step_that_opened_it():
    analysts = SimulatedAnalysts(AnalystSettings(delay_s=0.0))
    analysts.add([item(1, 7, T0 + 100)], step_end_s=T0 + 3600)
    assert analysts.next_event_s(T0 + 100) == T0 + 3600


def test_capacity_goes_to_the_highest_expected_loss_and_the_rest_waits_for_the_next_day():
    analysts = SimulatedAnalysts(AnalystSettings(capacity_cards_per_day=1, delay_s=HOUR))
    analysts.add([item(1, 1, T0 + 10, amount=50.0), item(2, 2, T0 + 10, amount=500.0)], step_end_s=T0 + 20)
    first = analysts.work(T0 + 10 + HOUR)
    assert [v.card for v in first] == [2]
    assert analysts.work(T0 + 12 * HOUR) == []  # today's capacity is used
    assert analysts.next_event_s(T0 + 12 * HOUR) == T0 + DAY
    second = analysts.work(T0 + DAY)
    assert [(v.card, v.known_at_s) for v in second] == [(1, T0 + DAY)]


def test_cases_expire_and_analyst_errors_flip_verdicts():
    analysts = SimulatedAnalysts(AnalystSettings(capacity_cards_per_day=0, case_expiry_s=2 * DAY))
    analysts.add([item(1, 1, T0)], step_end_s=T0 + 1)
    assert analysts.work(T0 + 3 * DAY) == [] and analysts.pending_cases == 0
    assert analysts.log.expired_per_day == {17_602: 1}
    wrong = SimulatedAnalysts(AnalystSettings(error_rate=1.0, delay_s=0.0))
    wrong.add([item(1, 1, T0, fraud=True), item(2, 2, T0, fraud=False)], step_end_s=T0 + 1)
    assert sorted((v.transaction_id, v.fraud) for v in wrong.work(T0 + 1)) == [(1, False), (2, True)]
    with pytest.raises(ValueError, match="error_rate"):
        AnalystSettings(error_rate=2.0)


def test_items_settled_by_chargeback_leave_their_case_and_an_emptied_case_uses_no_capacity():
    analysts = SimulatedAnalysts(AnalystSettings(capacity_cards_per_day=1, delay_s=HOUR))
    analysts.add([item(1, 7, T0 + 100), item(2, 7, T0 + 200)], step_end_s=T0 + 300)
    analysts.add([item(3, 8, T0 + 100, amount=1.0)], step_end_s=T0 + 300)
    now = T0 + 100 + HOUR
    assert sorted(analysts.ready_items(now)) == [1, 2, 3]
    verdicts = analysts.work(now, settled={1, 2})  # card 7's items were settled: card 8 gets the capacity
    assert [v.transaction_id for v in verdicts] == [3]
    assert analysts.pending_cases == 0 and analysts.log.settled_per_day == {17_600: 1}
