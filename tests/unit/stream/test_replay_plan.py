"""The replay plan: event-time order, label placement, pacing; and the frame checks before it."""

import numpy as np
import pandas as pd
import pytest

from fraudstream.detectors.schema import (
    CUSTOMER_ID,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
)
from fraudstream.stream.replay import (
    EVENT_LABEL,
    EVENT_TRANSACTION,
    ReplayInputError,
    columns_from_frame,
    parse_duration,
    plan_replay,
    select_window,
)

DAY = 86_400.0


@pytest.mark.parametrize("text, seconds", [("7d", 7 * DAY), ("12h", 12 * 3600.0), ("30m", 1800.0),
                                           ("45s", 45.0), ("90", 90.0), (" 1.5D ", 1.5 * DAY)])
def test_parse_duration_units(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "7w", "-1d", "d", "1d2h", "abc"])
def test_parse_duration_rejects_garbage(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_transactions_go_in_time_then_id_order():
    rng = np.random.default_rng(3)
    t = rng.integers(0, 50, size=200).astype(float)
    ids = rng.permutation(200)
    plan = plan_replay(t, ids)
    assert plan.n_transactions == 200 and plan.n_labels == 0
    sent_t, sent_id = t[plan.row], ids[plan.row]
    key = sent_t * 1000 + sent_id
    assert np.all(np.diff(key) > 0)
    assert sorted(plan.row.tolist()) == list(range(200))


def test_each_known_label_comes_before_the_first_transaction_at_its_release_time():
    rng = np.random.default_rng(5)
    n = 500
    t = np.sort(rng.uniform(0, 30 * DAY, size=n))
    fraud = rng.integers(0, 2, size=n).astype(float)
    fraud[rng.random(n) < 0.2] = np.nan
    delay, lead = 7 * DAY, 1 * DAY
    plan = plan_replay(t, np.arange(n), fraud, labels_delay_s=delay, labels_lead_s=lead, label_feed="all")
    assert plan.n_labels == int(np.sum(~np.isnan(fraud)))
    labels = np.flatnonzero(plan.kind == EVENT_LABEL)
    assert set(plan.row[labels].tolist()) == set(np.flatnonzero(~np.isnan(fraud)).tolist())
    for pos in labels:
        release = t[plan.row[pos]] + delay - lead
        before = plan.kind[:pos] == EVENT_TRANSACTION
        after = plan.kind[pos + 1:] == EVENT_TRANSACTION
        # every transaction sent before the label is earlier than the release; none after it is
        assert np.all(t[plan.row[:pos][before]] < release)
        assert np.all(t[plan.row[pos + 1:][after]] >= release)
    # event times never go back
    assert np.all(np.diff(plan.event_time) >= 0)


def test_default_feed_sends_fraud_reports_only_and_all_sends_every_known_label():
    t = np.arange(6.0) * DAY
    fraud = np.array([0.0, 1.0, np.nan, 1.0, 0.0, 0.0])
    fraud_only = plan_replay(t, np.arange(6), fraud, labels_delay_s=DAY)
    every = plan_replay(t, np.arange(6), fraud, labels_delay_s=DAY, label_feed="all")
    assert sorted(fraud_only.row[fraud_only.kind == EVENT_LABEL].tolist()) == [1, 3]
    assert sorted(every.row[every.kind == EVENT_LABEL].tolist()) == [0, 1, 3, 4, 5]
    with pytest.raises(ValueError, match="label feed"):
        plan_replay(t, np.arange(6), fraud, labels_delay_s=DAY, label_feed="legit")


def test_label_at_the_same_time_as_a_transaction_goes_first():
    t = np.array([0.0, 10.0])
    plan = plan_replay(t, np.array([1, 2]), np.array([1.0, np.nan]), labels_delay_s=10.0, labels_lead_s=0.0)
    assert plan.kind.tolist() == [EVENT_TRANSACTION, EVENT_LABEL, EVENT_TRANSACTION]
    assert plan.row.tolist() == [0, 0, 1]


def test_no_labels_without_delay_or_without_fraud_column():
    t = np.arange(5.0)
    assert plan_replay(t, np.arange(5), np.ones(5)).n_labels == 0
    assert plan_replay(t, np.arange(5), None, labels_delay_s=DAY).n_labels == 0


def test_rate_paces_transactions_and_labels_ride_with_the_next_one():
    t = np.array([0.0, 100.0, 200.0, 300.0])
    plan = plan_replay(t, np.arange(4), np.array([0, 1, 0, 1.0]), rate=10.0, labels_delay_s=150.0,
                       labels_lead_s=0.0, label_feed="all")
    tx = plan.kind == EVENT_TRANSACTION
    assert np.allclose(plan.send_at_s[tx], np.arange(4) / 10.0)
    for pos in np.flatnonzero(~tx):
        following = np.flatnonzero(tx[pos:])
        expected = plan.send_at_s[pos + following[0]] if following.size else tx.sum() / 10.0
        assert plan.send_at_s[pos] == pytest.approx(expected)


def test_speedup_maps_event_time_to_wall_time():
    t = np.array([1000.0, 1000.0 + DAY, 1000.0 + 3 * DAY])
    plan = plan_replay(t, np.arange(3), speedup=DAY)
    assert np.allclose(plan.send_at_s, [0.0, 1.0, 3.0])


def test_labels_past_the_last_transaction_are_sent_at_its_time():
    t = np.array([0.0, DAY])
    plan = plan_replay(t, np.arange(2), np.array([1.0, 0.0]), speedup=DAY, labels_delay_s=7 * DAY,
                       labels_lead_s=DAY, label_feed="all")
    assert plan.kind.tolist() == [EVENT_TRANSACTION, EVENT_TRANSACTION, EVENT_LABEL, EVENT_LABEL]
    assert np.allclose(plan.send_at_s, [0.0, 1.0, 1.0, 1.0])


def test_as_fast_as_possible_has_no_schedule():
    assert not plan_replay(np.array([5.0, 1.0, 3.0]), np.arange(3)).send_at_s.any()


@pytest.mark.parametrize("kwargs, match", [
    (dict(rate=10.0, speedup=2.0), "either"),
    (dict(rate=0.0), "rate"),
    (dict(speedup=-1.0), "speedup"),
    (dict(labels_delay_s=-5.0), "delay"),
    (dict(labels_lead_s=-1.0), "lead"),
])
def test_bad_pacing_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan_replay(np.arange(3.0), np.arange(3), np.zeros(3), **kwargs)


def test_fraud_values_other_than_0_1_are_rejected_with_the_position():
    with pytest.raises(ValueError, match="position 1"):
        plan_replay(np.arange(3.0), np.arange(3), np.array([0.0, 2.0, 1.0]), labels_delay_s=DAY)


def _frame(n=6):
    return pd.DataFrame({
        TRANSACTION_ID: np.arange(n),
        TX_DATETIME: pd.date_range("2018-04-01", periods=n, freq="12h"),
        CUSTOMER_ID: np.arange(n) % 3,
        TERMINAL_ID: np.arange(n) % 2,
        TX_AMOUNT: np.linspace(1.0, 60.0, n),
        TX_FRAUD: [0, 1, 0, np.nan, 1, 0],
    })


def test_columns_from_frame_converts_times_to_epoch_seconds():
    cols = columns_from_frame(_frame())
    start = pd.Timestamp("2018-04-01", tz="UTC").timestamp()
    assert np.allclose(cols.timestamp, start + np.arange(6) * 43_200.0)
    assert np.isnan(cols.fraud[3]) and cols.fraud[1] == 1.0


@pytest.mark.parametrize("column, value, match", [
    (TX_AMOUNT, "abc", "row 4, column TX_AMOUNT"),
    (CUSTOMER_ID, -3, "row 4, column CUSTOMER_ID"),
    (TX_DATETIME, "not a time", "row 4, column TX_DATETIME"),
    (TX_FRAUD, 7, "row 4, column TX_FRAUD"),
])
def test_bad_cells_are_reported_with_row_and_column(column, value, match):
    frame = _frame().astype({column: object})
    frame.loc[4, column] = value
    with pytest.raises(ReplayInputError, match=match):
        columns_from_frame(frame)


def test_an_account_column_is_checked_and_read():
    frame = _frame()
    frame["ACCOUNT_ID"] = np.arange(len(frame)) // 2
    assert columns_from_frame(frame).account_id.tolist() == (np.arange(len(frame)) // 2).tolist()
    assert columns_from_frame(_frame()).account_id is None
    frame = frame.astype({"ACCOUNT_ID": object})
    frame.loc[4, "ACCOUNT_ID"] = "x"
    with pytest.raises(ReplayInputError, match="row 4, column ACCOUNT_ID"):
        columns_from_frame(frame)


def test_missing_column_is_named():
    with pytest.raises(ReplayInputError, match="TERMINAL_ID"):
        columns_from_frame(_frame().drop(columns=[TERMINAL_ID]))


def test_select_window_is_half_open_and_limit_takes_the_earliest():
    frame = _frame()
    start = pd.Timestamp("2018-04-01T12:00", tz="UTC").timestamp()
    end = pd.Timestamp("2018-04-03", tz="UTC").timestamp()
    assert select_window(frame, start, end)[TRANSACTION_ID].tolist() == [1, 2, 3]
    shuffled = frame.sample(frac=1.0, random_state=1)
    assert sorted(select_window(shuffled, limit=2)[TRANSACTION_ID].tolist()) == [0, 1]
    assert select_window(frame) is frame
