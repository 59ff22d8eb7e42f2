"""Incremental features: state round trips, duplicates, label timing, trimming, hand-made windows."""

import struct

import numpy as np
import pytest

from fraudstream.detectors.features.definition import DAY_S, FeatureConfig
from fraudstream.detectors.features.online import (
    STATE_TRIM_SLACK_S,
    CustomerHistory,
    IncrementalFeatures,
    TerminalHistory,
)
from fraudstream.detectors.schema import LabelEvent, TransactionBatch

T0 = 1_700_000_000.0
CONFIG = FeatureConfig()
NAMES = CONFIG.feature_names()
COL = {name: i for i, name in enumerate(NAMES)}


def make_batch(rows):
    """rows: (transaction id, seconds after T0, customer, terminal, amount)."""
    ids, seconds, customers, terminals, amounts = (np.array(c) for c in zip(*rows))
    return TransactionBatch(ids.astype(np.int64), T0 + seconds.astype(np.float64), customers.astype(np.int64),
                            terminals.astype(np.int64), amounts.astype(np.float64))


def label(transaction_id, seconds, terminal, fraud, known_after_s):
    return LabelEvent(transaction_id=transaction_id, terminal_id=terminal, customer_id=0,
                      tx_timestamp=T0 + seconds, fraud=fraud, known_at=T0 + seconds + known_after_s)


def snapshot(customers, terminals):
    return ({k: v.to_bytes() for k, v in customers.items()}, {k: v.to_bytes() for k, v in terminals.items()})


def test_histories_round_trip_through_bytes():
    customer = CustomerHistory([T0, T0 + 0.25], [3, 2**62], [1.5, 0.0], [7, 8])
    terminal = TerminalHistory([T0, T0 + 1], [3, 4], [T0], [3], [T0 + 99.5])
    assert CustomerHistory.from_bytes(customer.to_bytes()) == customer
    restored = TerminalHistory.from_bytes(terminal.to_bytes())
    assert restored == terminal
    assert restored.max_known_at == T0 + 99.5
    assert restored.labels == [(3, T0, True, T0 + 99.5)]
    assert CustomerHistory.from_bytes(CustomerHistory().to_bytes()) == CustomerHistory()
    assert len(customer.to_bytes()) < 16 + 2 * 32


def test_state_bytes_keep_the_documented_little_endian_layout():
    """State written before the columns became arrays (struct-packed lists) still decodes, and vice versa."""
    customer = CustomerHistory([T0, T0 + 0.25], [3, -2**62], [1.5, 0.0], [7, 8])
    expected = struct.pack("<4sI2d2q2d2q", b"FSC1", 2, T0, T0 + 0.25, 3, -2**62, 1.5, 0.0, 7, 8)
    assert customer.to_bytes() == expected
    assert CustomerHistory.from_bytes(expected) == customer
    terminal = TerminalHistory([T0, T0 + 1], [3, 4], [T0], [3], [T0 + 99.5])
    expected = struct.pack("<4sII2d2qdqd", b"FST1", 2, 1, T0, T0 + 1, 3, 4, T0, 3, T0 + 99.5)
    assert terminal.to_bytes() == expected
    restored = TerminalHistory.from_bytes(expected)
    assert restored == terminal and restored.max_known_at == T0 + 99.5
    assert TerminalHistory.from_bytes(TerminalHistory([T0], [5]).to_bytes()).max_known_at == float("-inf")


def test_has_transaction_matches_whole_ids_only():
    ids = [0x0100000000000000, 1, -7, 2**63 - 1]
    customer = CustomerHistory([T0] * len(ids), ids, [1.0] * len(ids), [0] * len(ids))
    straddling = int.from_bytes(customer.to_bytes()[8 + 32 + 4:8 + 32 + 12], "little", signed=True)
    for candidate in ids + [straddling, 2, -1, 0]:
        assert customer.has_transaction(candidate) == (candidate in ids), candidate
    assert not CustomerHistory().has_transaction(1)


@pytest.mark.parametrize("corrupt", [lambda b: b[:-1], lambda b: b"XXXX" + b[4:], lambda b: b[:3]])
def test_corrupt_state_bytes_are_rejected(corrupt):
    customer = CustomerHistory([T0], [1], [2.0], [3])
    terminal = TerminalHistory([T0], [1], [T0], [1], [T0])
    with pytest.raises(ValueError, match="customer history"):
        CustomerHistory.from_bytes(corrupt(customer.to_bytes()))
    with pytest.raises(ValueError, match="terminal history"):
        TerminalHistory.from_bytes(corrupt(terminal.to_bytes()))


def test_new_entities_are_created_in_the_mappings():
    customers, terminals = {}, {}
    out = IncrementalFeatures().transform(make_batch([(1, 0, 5, 9, 10.0), (2, 60, 5, 8, 30.0)]), customers, terminals)
    assert out.shape == (2, len(NAMES)) and out.dtype == np.float64
    assert set(customers) == {5} and set(terminals) == {8, 9}
    assert list(customers[5].transaction_ids) == [1, 2]
    assert out[1, COL["CUSTOMER_ID_NB_TX_1DAY_WINDOW"]] == 2
    assert out[1, COL["CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW"]] == 20.0
    assert out[1, COL["CUSTOMER_SECONDS_SINCE_LAST_TX"]] == 60.0
    assert out[1, COL["CUSTOMER_NB_TERMINALS_1DAY_WINDOW"]] == 2
    assert out[1, COL["CUSTOMER_AMOUNT_RATIO_HISTORY"]] == 3.0


def test_customer_window_edges_and_ties():
    features = IncrementalFeatures()
    out = features.transform(make_batch([
        (1, 0, 5, 9, 10.0),
        (2, DAY_S, 5, 9, 30.0),  # the first is exactly one day before: outside (t - 1 day, t]
        (3, DAY_S, 5, 8, 50.0),  # tie with 2: counts it, but it is not in the history (t - 30 days, t)
    ]), {}, {})
    assert out[:, COL["CUSTOMER_ID_NB_TX_1DAY_WINDOW"]].tolist() == [1, 1, 2]
    assert out[:, COL["CUSTOMER_ID_NB_TX_7DAY_WINDOW"]].tolist() == [1, 2, 3]
    assert out[2, COL["CUSTOMER_SECONDS_SINCE_LAST_TX"]] == 0.0
    assert out[2, COL["CUSTOMER_AMOUNT_RATIO_HISTORY"]] == 5.0  # history mean is 10 (transaction 1 only)
    assert out[2, COL["CUSTOMER_TERMINAL_IS_NEW"]] == 1.0


def test_redelivered_transactions_are_not_counted_twice():
    features = IncrementalFeatures()
    customers, terminals = {}, {}
    rows = [(1, 0, 5, 9, 10.0), (2, 100, 5, 9, 20.0), (3, 100, 6, 9, 40.0)]
    first = features.transform(make_batch(rows), customers, terminals)
    state = snapshot(customers, terminals)
    again = features.transform(make_batch(rows[1:] + rows[:1]), customers, terminals)
    np.testing.assert_array_equal(again, first[[1, 2, 0]])
    assert snapshot(customers, terminals) == state
    within = features.transform(make_batch([(4, 200, 5, 9, 1.0), (4, 200, 5, 9, 1.0)]), customers, terminals)
    np.testing.assert_array_equal(within[0], within[1])
    assert list(customers[5].transaction_ids) == [1, 2, 4]
    assert list(terminals[9].transaction_ids) == [1, 2, 3, 4]


def test_late_event_sees_only_earlier_transactions_and_is_inserted_in_place():
    features = IncrementalFeatures()
    customers = {}
    features.transform(make_batch([(1, 0, 5, 9, 10.0), (3, 200, 5, 9, 30.0)]), customers, {})
    late = features.transform(make_batch([(2, 100, 5, 8, 20.0)]), customers, {})
    assert late[0, COL["CUSTOMER_ID_NB_TX_1DAY_WINDOW"]] == 2
    assert late[0, COL["CUSTOMER_SECONDS_SINCE_LAST_TX"]] == 100.0
    assert list(customers[5].transaction_ids) == [1, 2, 3]


def test_terminal_risk_counts_labels_known_by_the_transaction_time_only():
    delay = CONFIG.label_delay_s
    features = IncrementalFeatures()
    customers, terminals = {}, {}
    features.transform(make_batch([(1, 0, 5, 9, 10.0), (2, 10, 6, 9, 10.0)]), customers, terminals)
    features.learn_labels([label(1, 0, 9, True, delay), label(2, 10, 9, True, delay + 0.25)], terminals)
    out = features.transform(make_batch([(3, delay + 10, 7, 9, 1.0)]), customers, terminals)
    assert out[0, COL["TERMINAL_ID_NB_TX_1DAY_WINDOW"]] == 2
    assert out[0, COL["TERMINAL_ID_RISK_1DAY_WINDOW"]] == 0.5  # label of 2 is known 250 ms too late
    out = features.transform(make_batch([(4, delay + 10.25, 8, 9, 1.0)]), customers, terminals)
    assert out[0, COL["TERMINAL_ID_RISK_1DAY_WINDOW"]] == 1.0  # ... and just in time here


def test_terminal_window_ends_label_delay_before_the_transaction():
    delay = CONFIG.label_delay_s
    features = IncrementalFeatures()
    customers, terminals = {}, {}
    features.transform(make_batch([(1, 0, 5, 9, 10.0)]), customers, terminals)
    features.learn_labels([label(1, 0, 9, True, delay)], terminals)
    out = features.transform(make_batch([(2, delay - 1, 6, 9, 1.0), (3, delay, 7, 9, 1.0),
                                         (4, delay + DAY_S, 8, 9, 1.0)]), customers, terminals)
    assert out[:, COL["TERMINAL_ID_NB_TX_1DAY_WINDOW"]].tolist() == [0, 1, 0]
    assert out[:, COL["TERMINAL_ID_RISK_1DAY_WINDOW"]].tolist() == [0.0, 1.0, 0.0]
    assert out[:, COL["TERMINAL_ID_NB_TX_7DAY_WINDOW"]].tolist() == [0, 1, 1]


def test_a_later_label_replaces_the_earlier_one():
    delay = CONFIG.label_delay_s
    features = IncrementalFeatures()
    terminals = {}
    features.transform(make_batch([(1, 0, 5, 9, 10.0)]), {}, terminals)
    features.learn_labels([label(1, 0, 9, True, 1.0), label(1, 0, 9, True, 2.0)], terminals)
    assert terminals[9].labels == [(1, T0, True, T0 + 2.0)]
    out = features.transform(make_batch([(2, delay, 6, 9, 1.0)]), {}, terminals)
    assert out[0, COL["TERMINAL_ID_RISK_7DAY_WINDOW"]] == 1.0
    features.learn_labels([label(1, 0, 9, False, 3.0)], terminals)
    assert terminals[9].labels == []
    out = features.transform(make_batch([(3, delay + 1, 7, 9, 1.0)]), {}, terminals)
    assert out[0, COL["TERMINAL_ID_RISK_7DAY_WINDOW"]] == 0.0


def test_labels_may_arrive_before_their_terminal_is_known():
    terminals = {}
    IncrementalFeatures().learn_labels([label(1, 0, 4, True, 5.0)], terminals)
    assert terminals[4].labels == [(1, T0, True, T0 + 5.0)]
    assert len(terminals[4]) == 0


def test_state_is_trimmed_to_the_retention():
    features = IncrementalFeatures()
    customers, terminals = {}, {}
    customer_keep_s = CONFIG.customer_retention_s + STATE_TRIM_SLACK_S
    terminal_keep_s = CONFIG.terminal_retention_s + STATE_TRIM_SLACK_S
    features.transform(make_batch([(1, 0, 5, 9, 10.0), (2, 1, 5, 9, 10.0)]), customers, terminals)
    features.learn_labels([label(1, 0, 9, True, 1.0)], terminals)
    out = features.transform(make_batch([(3, customer_keep_s, 5, 9, 1.0)]), customers, terminals)
    assert list(customers[5].transaction_ids) == [2, 3]  # exactly as old as kept: dropped; 1 s younger: kept
    assert list(terminals[9].transaction_ids) == [1, 2, 3]
    assert out[0, COL["CUSTOMER_SECONDS_SINCE_LAST_TX"]] == CONFIG.history_days * DAY_S
    assert out[0, COL["CUSTOMER_ID_NB_TX_30DAY_WINDOW"]] == 1
    features.transform(make_batch([(4, terminal_keep_s + 1, 6, 9, 1.0)]), customers, terminals)
    assert list(terminals[9].transaction_ids) == [3, 4]
    assert terminals[9].labels == []
    assert list(customers[5].transaction_ids) == [2, 3]  # only the customer's own transactions move its horizon


def test_zero_delay_counts_this_transaction_and_earlier_ties_at_the_terminal():
    config = FeatureConfig(label_delay_days=0)
    col = {name: i for i, name in enumerate(config.feature_names())}
    features = IncrementalFeatures(config)
    terminals = {}
    features.learn_labels([label(2, 50, 9, True, 0.0)], terminals)
    out = features.transform(make_batch([(1, 50, 1, 9, 1.0), (2, 50, 2, 9, 1.0), (3, 50, 3, 9, 1.0)]), {},
                             terminals)
    assert out[:, col["TERMINAL_ID_NB_TX_1DAY_WINDOW"]].tolist() == [1, 2, 3]
    assert out[:, col["TERMINAL_ID_RISK_1DAY_WINDOW"]].tolist() == [0.0, 0.5, pytest.approx(1 / 3)]


def test_empty_batch_gives_no_rows():
    empty = TransactionBatch.from_transactions([])
    assert IncrementalFeatures().transform(empty, {}, {}).shape == (0, len(NAMES))


def test_unusable_batch_values_are_rejected_with_field_and_transaction():
    batch = make_batch([(1, 0, 5, 9, 10.0), (2, 60, 5, 9, 20.0)])
    batch.timestamp[1] = np.nan
    with pytest.raises(ValueError, match=r"timestamp.*row 1 \(transaction 2\)"):
        IncrementalFeatures().transform(batch, {}, {})
    short = TransactionBatch(batch.transaction_id, batch.timestamp, batch.customer_id[:1], batch.terminal_id,
                             batch.amount)
    with pytest.raises(ValueError, match="customer_id"):
        IncrementalFeatures().transform(short, {}, {})


def test_baseline_ratio_leaves_out_the_recent_days():
    out = IncrementalFeatures().transform(make_batch([
        (1, 0, 5, 9, 10.0),
        (2, 16 * DAY_S, 5, 9, 100.0),  # exactly t - 14 days for transaction 4: in (closed upper edge)
        (3, 20 * DAY_S, 5, 9, 1000.0),  # recent for transaction 4
        (5, 30 * DAY_S - 1, 5, 9, 20.0),  # baseline (-1 s, 16 days - 1 s]: transaction 1 only
        (4, 30 * DAY_S, 5, 9, 50.0),  # transaction 1 is exactly 30 days before: out (open lower edge)
    ]), {}, {})
    assert out[:, COL["CUSTOMER_AMOUNT_RATIO_BASELINE"]].tolist() == [1.0, 10.0, 100.0, 2.0, 0.5]


def test_baseline_without_recent_days_holds_this_event_and_earlier_ties():
    config = FeatureConfig(recent_days=0)
    col = config.feature_names().index("CUSTOMER_AMOUNT_RATIO_BASELINE")
    out = IncrementalFeatures(config).transform(
        make_batch([(30, 0, 5, 2, 20.0), (10, 100, 5, 1, 30.0), (20, 100, 5, 1, 10.0)]), {}, {})
    assert out[:, col].tolist() == [1.0, pytest.approx(30.0 / 25.0), pytest.approx(10.0 / 20.0)]


def test_fraud_episode_age_uses_known_labels_only():
    delay = CONFIG.label_delay_s
    features = IncrementalFeatures()
    customers, terminals = {}, {}
    first = features.transform(make_batch([(1, 0, 5, 9, 10.0), (2, 10, 6, 9, 10.0)]), customers, terminals)
    assert first[:, COL["TERMINAL_FRAUD_EPISODE_AGE"]].tolist() == [CONFIG.terminal_retention_s] * 2
    features.learn_labels([label(1, 0, 9, True, delay + 20), label(2, 10, 9, True, delay)], terminals)
    age = []
    for transaction_id, seconds in ((3, delay + 10), (4, delay + 20)):
        out = features.transform(make_batch([(transaction_id, seconds, 7, 9, 1.0)]), customers, terminals)
        age.append(out[0, COL["TERMINAL_FRAUD_EPISODE_AGE"]])
    assert age == [delay, delay + 20]  # the label of 1 is not known at delay + 10 s, then it is
    features.learn_labels([label(1, 0, 9, False, delay + 21)], terminals)  # a correction: 1 was legitimate
    out = features.transform(make_batch([(5, delay + 21, 8, 9, 1.0), (6, delay + 21, 8, 4, 1.0)]), customers,
                             terminals)
    assert out[:, COL["TERMINAL_FRAUD_EPISODE_AGE"]].tolist() == [delay + 11, CONFIG.terminal_retention_s]


def test_fraud_episode_age_window_edges():
    delay, longest = CONFIG.label_delay_s, 30 * DAY_S
    features = IncrementalFeatures()
    customers, terminals = {}, {}
    features.transform(make_batch([(1, 0, 5, 9, 10.0), (2, DAY_S, 6, 9, 10.0)]), customers, terminals)
    features.learn_labels([label(1, 0, 9, True, delay), label(2, DAY_S, 9, True, delay)], terminals)
    out = features.transform(make_batch([(3, delay - 1, 7, 9, 1.0), (4, delay, 7, 9, 1.0),
                                         (5, delay + longest, 7, 9, 1.0), (6, delay + longest + DAY_S, 7, 9, 1.0)]),
                             customers, terminals)
    retention = CONFIG.terminal_retention_s
    assert out[:, COL["TERMINAL_FRAUD_EPISODE_AGE"]].tolist() == [retention, delay, delay + longest - DAY_S,
                                                                  retention]
