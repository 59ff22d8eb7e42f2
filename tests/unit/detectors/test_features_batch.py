"""Batch features: hand-made edge cases, a row-by-row reference of the definition, input errors."""

import numpy as np
import pandas as pd
import pytest

from fraudstream.detectors.features.batch import FeatureInputError, compute_features
from fraudstream.detectors.features.calendar import night_flags, weekend_flags
from fraudstream.detectors.features.definition import (
    AMOUNT_RATIO_MIN_MEAN,
    AMOUNT_ZSCORE_MIN_STD,
    DAY_S,
    HOUR_BAND_H,
    SEQUENCE_HIGH_AMOUNT_RATIO,
    FeatureConfig,
)
from fraudstream.detectors.schema import (
    CUSTOMER_ID,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
    datetime_to_epoch_seconds,
)

START = pd.Timestamp("2024-01-01 12:00:00")  # a Monday


def make_frame(rows):
    """rows: (transaction id, seconds after START, customer, terminal, amount, fraud)."""
    ids, seconds, customers, terminals, amounts, frauds = zip(*rows)
    return pd.DataFrame({
        TRANSACTION_ID: np.array(ids, dtype=np.int64),
        TX_DATETIME: START + pd.to_timedelta(np.array(seconds, dtype=np.float64), unit="s"),
        CUSTOMER_ID: np.array(customers, dtype=np.int64),
        TERMINAL_ID: np.array(terminals, dtype=np.int64),
        TX_AMOUNT: np.array(amounts, dtype=np.float64),
        TX_FRAUD: np.array(frauds, dtype=np.int8),
    })


def reference_features(frame, config, known_at=None):
    """The definition applied literally, one row at a time (slow, obviously correct)."""
    t_all = datetime_to_epoch_seconds(frame[TX_DATETIME])
    ids = frame[TRANSACTION_ID].to_numpy()
    cust = frame[CUSTOMER_ID].to_numpy()
    term = frame[TERMINAL_ID].to_numpy()
    amount = frame[TX_AMOUNT].to_numpy()
    fraud = frame[TX_FRAUD].fillna(0).to_numpy() if TX_FRAUD in frame else np.zeros(len(frame))
    d = config.label_delay_days * DAY_S
    history = config.history_days * DAY_S
    known_all = t_all + d if known_at is None else known_at
    rows = []
    for i in range(len(frame)):
        t = t_all[i]
        up_to_self = (t_all < t) | ((t_all == t) & (ids <= ids[i]))
        strictly_before = up_to_self & (ids != ids[i])
        mine = cust == cust[i]
        row = {"TX_AMOUNT": amount[i]}
        for w in config.customer_windows_days:
            sel = mine & up_to_self & (t_all > t - w * DAY_S)
            row[f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"] = sel.sum()
            row[f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"] = amount[sel].mean()
        for w in config.terminal_windows_days:
            sel = (term == term[i]) & up_to_self & (t_all > t - d - w * DAY_S) & (t_all <= t - d)
            known = sel & (known_all <= t)
            count = sel.sum()
            row[f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW"] = count
            row[f"TERMINAL_ID_RISK_{w}DAY_WINDOW"] = fraud[known].sum() / count if count else 0.0
        earlier = mine & (t_all > t - history) & (t_all < t)
        mean = amount[earlier].mean() if earlier.any() else None
        row["CUSTOMER_AMOUNT_RATIO_HISTORY"] = 1.0 if mean is None else amount[i] / max(mean, AMOUNT_RATIO_MIN_MEAN)
        row["CUSTOMER_TERMINAL_IS_NEW"] = float(not (earlier & (term == term[i])).any())
        previous = mine & strictly_before & (t_all > t - history)
        row["CUSTOMER_SECONDS_SINCE_LAST_TX"] = t - t_all[previous].max() if previous.any() else history
        row["CUSTOMER_NB_TX_BURST_WINDOW"] = (mine & up_to_self & (t_all > t - config.burst_window_s)).sum()
        row["CUSTOMER_NB_TERMINALS_1DAY_WINDOW"] = len(set(term[mine & up_to_self & (t_all > t - DAY_S)]))
        baseline = mine & up_to_self & (t_all > t - history) & (t_all <= t - config.recent_days * DAY_S)
        row["CUSTOMER_AMOUNT_RATIO_BASELINE"] = (amount[i] / max(amount[baseline].mean(), AMOUNT_RATIO_MIN_MEAN)
                                                 if baseline.any() else 1.0)
        longest = max(config.terminal_windows_days) * DAY_S
        frauds = ((term == term[i]) & up_to_self & (t_all > t - d - longest) & (t_all <= t - d)
                  & (known_all <= t) & (fraud == 1))
        row["TERMINAL_FRAUD_EPISODE_AGE"] = t - t_all[frauds].min() if frauds.any() else config.terminal_retention_s
        lag = config.terminal_burst_lag_s
        row["TERMINAL_NB_TX_BURST_WINDOW"] = (
            ((term == term[i]) & (t_all > t - lag - config.burst_window_s) & (t_all < t - lag)).sum() if lag > 0
            else ((term == term[i]) & up_to_self & (t_all > t - config.burst_window_s)).sum())
        earlier_amounts = amount[earlier]
        std = earlier_amounts.std() if earlier.sum() >= 2 else None
        row["CUSTOMER_AMOUNT_ZSCORE"] = (0.0 if std is None else
                                         (amount[i] - earlier_amounts.mean()) / max(std, AMOUNT_ZSCORE_MIN_STD))
        hours = np.floor(np.floor(t_all) % DAY_S / 3600.0)
        gap = np.abs(hours[earlier] - hours[i])
        row["CUSTOMER_HOUR_SHARE"] = (np.minimum(gap, 24 - gap) <= HOUR_BAND_H).mean() if earlier.any() else 1.0
        row["CUSTOMER_NB_SAME_AMOUNT"] = (earlier_amounts == amount[i]).sum()
        latest_first = np.flatnonzero(earlier)[np.lexsort((ids[earlier], t_all[earlier]))][::-1]
        ratios = []
        for k in range(1, config.sequence_length + 1):
            if k > latest_first.size:
                row.update({f"CUSTOMER_PREV{k}_AMOUNT_RATIO": 0.0, f"CUSTOMER_PREV{k}_GAP_S": history,
                            f"CUSTOMER_PREV{k}_SAME_TERMINAL": 0.0, f"CUSTOMER_PREV{k}_HOUR_GAP": -1.0})
                continue
            j = latest_first[k - 1]
            ratios.append(amount[j] / max(earlier_amounts.mean(), AMOUNT_RATIO_MIN_MEAN))
            hour_gap = abs(hours[j] - hours[i])
            row.update({f"CUSTOMER_PREV{k}_AMOUNT_RATIO": ratios[-1], f"CUSTOMER_PREV{k}_GAP_S": t - t_all[j],
                        f"CUSTOMER_PREV{k}_SAME_TERMINAL": float(term[j] == term[i]),
                        f"CUSTOMER_PREV{k}_HOUR_GAP": min(hour_gap, 24 - hour_gap)})
        if config.sequence_length:
            row["CUSTOMER_PREV_MAX_AMOUNT_RATIO"] = max(ratios, default=0.0)
            row["CUSTOMER_PREV_NB_HIGH_AMOUNT"] = sum(r > SEQUENCE_HIGH_AMOUNT_RATIO for r in ratios)
        for w in config.fresh_label_windows_days:
            row[f"TERMINAL_NB_FRAUDS_KNOWN_{w}DAY"] = ((term == term[i]) & (fraud == 1) & (t_all <= t)
                                                      & (t_all > t - config.terminal_retention_s)
                                                      & (known_all <= t) & (known_all > t - w * DAY_S)).sum()
        rows.append(row)
    names = [n for n in config.feature_names() if n not in ("TX_DURING_WEEKEND", "TX_DURING_NIGHT")]
    return pd.DataFrame(rows, index=frame.index)[names].astype(np.float64)


def random_frame(seed, n=400, days=40):
    rng = np.random.default_rng(seed)
    # few distinct times so that customers and terminals share timestamps (ties)
    grid = np.sort(rng.choice(days * 24 * 12, size=n // 3, replace=False)) * 300.0
    seconds = rng.choice(grid, size=n)
    rows = [(int(i), float(s), int(rng.integers(6)), int(rng.integers(5)), float(rng.choice([0.0, 3.5, 20.0, 99.99])),
             int(rng.random() < 0.2)) for i, s in zip(rng.permutation(10 * n)[:n], seconds)]
    return make_frame(rows)


CONFIGS = {
    "default": FeatureConfig(),
    "short_no_delay": FeatureConfig(customer_windows_days=(1, 2), terminal_windows_days=(1, 3), label_delay_days=0,
                                    burst_window_s=900.0, terminal_burst_lag_s=0.0, history_days=3, recent_days=1,
                                    sequence_length=2),
    "no_recent_days": FeatureConfig(terminal_windows_days=(1, 5), label_delay_days=2, history_days=10,
                                    recent_days=0, sequence_length=0),
}


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [0, 1])
def test_batch_matches_row_by_row_reference(config_name, seed):
    config = CONFIGS[config_name]
    frame = random_frame(seed)
    frame.index = pd.Index([f"r{i}" for i in range(len(frame))])
    features = compute_features(frame, config)
    expected = reference_features(frame, config)
    assert list(features.columns) == config.feature_names()
    assert features.index.equals(frame.index)
    assert (features.dtypes == np.float64).all()
    np.testing.assert_allclose(features[expected.columns].to_numpy(), expected.to_numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_labels_count_from_their_known_at_time(config_name):
    """Labels from a label model (some within the hour, some late, some never) instead of the fixed delay."""
    config = CONFIGS[config_name]
    frame = random_frame(3)
    rng = np.random.default_rng(4)
    t = datetime_to_epoch_seconds(frame[TX_DATETIME])
    known_at = t + rng.choice([600.0, 3_600.0, 2 * DAY_S, 9 * DAY_S, np.inf], size=len(frame))
    expected = reference_features(frame, config, known_at)
    features = compute_features(frame, config, known_at=np.where(np.isinf(known_at), np.nan, known_at))
    np.testing.assert_allclose(features[expected.columns].to_numpy(), expected.to_numpy(), rtol=1e-9, atol=1e-9)
    # the frame column gives the same (datetimes, never known = NaT), and fresh labels are counted
    with_column = frame.assign(TX_FRAUD_KNOWN_AT=pd.to_datetime(np.where(np.isinf(known_at), np.nan, known_at),
                                                                unit="s"))
    pd.testing.assert_frame_equal(compute_features(with_column, config), features)
    fresh = features[f"TERMINAL_NB_FRAUDS_KNOWN_{config.fresh_label_windows_days[0]}DAY"]
    assert fresh.max() > 0
    assert not features.equals(compute_features(frame, config))


def test_fresh_label_counts_follow_the_known_at_window():
    config = FeatureConfig(fresh_label_windows_days=(1,))
    rows = [(1, 0.0, 0, 9, 10.0, 1), (2, 100.0, 0, 9, 10.0, 1), (3, 3_000.0, 1, 9, 10.0, 0),
            (4, 90_000.0, 1, 9, 10.0, 0), (5, 200_000.0, 1, 9, 10.0, 0)]
    frame = make_frame(rows)
    t = datetime_to_epoch_seconds(frame[TX_DATETIME])
    known_at = t.copy()
    known_at[0], known_at[1] = t[0] + 1_000.0, t[1] + 50_000.0
    features = compute_features(frame, config, known_at=known_at)["TERMINAL_NB_FRAUDS_KNOWN_1DAY"]
    # row 3 at 3,000 s: only label 1 known (at 1,000 s); row 4 at 90,000 s: label 1 known more than a day ago,
    # label 2 (known at 50,100 s) inside the day; row 5: both older than a day
    assert features.tolist() == [0.0, 0.0, 1.0, 1.0, 0.0]


def test_card_novelty_against_its_own_history():
    # card 0: 10, 20, 30 at noon on three days, then 20 at 03:00 (hour 3 vs 12: far) and a repeat of 30 at 13:00
    rows = [(1, 0.0, 0, 1, 10.0, 0), (2, DAY_S, 0, 1, 20.0, 0), (3, 2 * DAY_S, 0, 2, 30.0, 0),
            (4, 2.625 * DAY_S, 0, 3, 20.0, 0), (5, 3 * DAY_S + 3_600.0, 0, 3, 30.0, 0)]
    features = compute_features(make_frame(rows))
    std = np.std([10.0, 20.0, 30.0])
    assert features["CUSTOMER_AMOUNT_ZSCORE"].tolist() == pytest.approx(
        [0.0, 0.0, (30.0 - 15.0) / max(5.0, AMOUNT_ZSCORE_MIN_STD), 0.0, (30.0 - 20.0) / np.std([10, 20, 30, 20])])
    assert std > AMOUNT_ZSCORE_MIN_STD
    assert features["CUSTOMER_HOUR_SHARE"].tolist() == pytest.approx([1.0, 1.0, 1.0, 0.0, 0.75])
    assert features["CUSTOMER_NB_SAME_AMOUNT"].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]


def test_card_sequence_lists_the_latest_earlier_transactions_latest_first():
    # card 0: 10 at noon (terminal 1), 20 a day later (terminal 2), 200 the next day at 15:00 (terminal 1), then
    # a charge at terminal 1 at 13:00 on day 3: its sequence is 200, 20, 10 against their mean of 76.67
    rows = [(1, 0.0, 0, 1, 10.0, 0), (2, DAY_S, 0, 2, 20.0, 0), (3, 2 * DAY_S + 3 * 3_600.0, 0, 1, 200.0, 0),
            (4, 3 * DAY_S + 3_600.0, 0, 1, 5.0, 0)]
    config = FeatureConfig(sequence_length=4)
    last = compute_features(make_frame(rows), config).iloc[3]
    mean = (10.0 + 20.0 + 200.0) / 3
    assert [last[f"CUSTOMER_PREV{k}_AMOUNT_RATIO"] for k in (1, 2, 3, 4)] == pytest.approx(
        [200.0 / mean, 20.0 / mean, 10.0 / mean, 0.0])
    assert [last[f"CUSTOMER_PREV{k}_GAP_S"] for k in (1, 2, 3, 4)] == pytest.approx(
        [DAY_S - 2 * 3_600.0, 2 * DAY_S + 3_600.0, 3 * DAY_S + 3_600.0, config.history_days * DAY_S])
    assert [last[f"CUSTOMER_PREV{k}_SAME_TERMINAL"] for k in (1, 2, 3, 4)] == [1.0, 0.0, 1.0, 0.0]
    assert [last[f"CUSTOMER_PREV{k}_HOUR_GAP"] for k in (1, 2, 3, 4)] == [2.0, 1.0, 1.0, -1.0]
    assert last["CUSTOMER_PREV_MAX_AMOUNT_RATIO"] == pytest.approx(200.0 / mean)
    assert last["CUSTOMER_PREV_NB_HIGH_AMOUNT"] == 0.0  # 2.6 times the mean: not above 3
    assert compute_features(make_frame(rows[:1]), config).iloc[0]["CUSTOMER_PREV_MAX_AMOUNT_RATIO"] == 0.0


def test_terminal_burst_counts_the_last_window_without_delay():
    config = FeatureConfig(burst_window_s=3_600.0, terminal_burst_lag_s=0.0)
    rows = [(k, 600.0 * k, k, 7, 10.0, 0) for k in range(1, 9)]  # eight cards at one terminal, every 10 min
    features = compute_features(make_frame(rows), config)["TERMINAL_NB_TX_BURST_WINDOW"]
    assert features.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 6.0, 6.0]


def test_terminal_burst_ends_where_event_time_is_settled_across_partitions():
    config = FeatureConfig(burst_window_s=3_600.0, terminal_burst_lag_s=1_800.0)
    rows = [(k, 600.0 * k, k, 7, 10.0, 0) for k in range(1, 13)]  # twelve cards at one terminal, every 10 min
    features = compute_features(make_frame(rows), config)["TERMINAL_NB_TX_BURST_WINDOW"]
    # (t - 90 min, t - 30 min): nothing of the last half hour, which another partition may not have delivered
    assert features.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0]  # both ends open


def test_label_times_before_their_transaction_are_rejected():
    frame = random_frame(0)
    t = datetime_to_epoch_seconds(frame[TX_DATETIME])
    with pytest.raises(FeatureInputError, match="TX_FRAUD_KNOWN_AT.*before its transaction"):
        compute_features(frame, known_at=t - 1.0)


def test_row_order_does_not_change_values():
    frame = random_frame(7)
    shuffled = frame.sample(frac=1.0, random_state=3)
    a = compute_features(frame)
    b = compute_features(shuffled)
    assert b.index.equals(shuffled.index)
    np.testing.assert_allclose(b.loc[a.index].to_numpy(), a.to_numpy(), rtol=1e-12, atol=1e-9)


def test_customer_window_lower_edge_is_open():
    frame = make_frame([
        (1, 0, 5, 1, 10.0, 0),
        (2, DAY_S, 5, 1, 30.0, 0),  # exactly one day later: the first one is out of the 1-day window
        (3, 2 * DAY_S - 1, 5, 1, 50.0, 0),  # 1 s less than a day after the second: it is in
    ])
    f = compute_features(frame).set_index(frame[TRANSACTION_ID])
    assert f.loc[2, "CUSTOMER_ID_NB_TX_1DAY_WINDOW"] == 1
    assert f.loc[2, "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW"] == 30.0
    assert f.loc[3, "CUSTOMER_ID_NB_TX_1DAY_WINDOW"] == 2
    assert f.loc[3, "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW"] == 40.0
    assert f.loc[3, "CUSTOMER_ID_NB_TX_7DAY_WINDOW"] == 3
    assert f.loc[3, "CUSTOMER_SECONDS_SINCE_LAST_TX"] == DAY_S - 1
    assert f.loc[1, "CUSTOMER_SECONDS_SINCE_LAST_TX"] == 30 * DAY_S


def test_ties_at_the_same_time_follow_transaction_id():
    frame = make_frame([
        (20, 100, 5, 1, 10.0, 0),
        (10, 100, 5, 1, 30.0, 0),
        (30, 0, 5, 2, 20.0, 0),
    ])
    f = compute_features(frame).set_index(frame[TRANSACTION_ID])
    assert f.loc[10, "CUSTOMER_ID_NB_TX_1DAY_WINDOW"] == 2
    assert f.loc[20, "CUSTOMER_ID_NB_TX_1DAY_WINDOW"] == 3
    assert f.loc[20, "CUSTOMER_SECONDS_SINCE_LAST_TX"] == 0.0
    assert f.loc[10, "CUSTOMER_SECONDS_SINCE_LAST_TX"] == 100.0
    # (t - history, t) holds no transaction at time t: the tie with id 10 is neither history nor a known terminal
    assert f.loc[20, "CUSTOMER_AMOUNT_RATIO_HISTORY"] == pytest.approx(10.0 / 20.0)
    assert f.loc[20, "CUSTOMER_TERMINAL_IS_NEW"] == 1.0
    assert f.loc[20, "CUSTOMER_NB_TERMINALS_1DAY_WINDOW"] == 2


def test_terminal_window_is_shifted_by_the_label_delay():
    delay = FeatureConfig().label_delay_s
    frame = make_frame([
        (1, 0, 1, 9, 10.0, 1),
        (2, delay - 1, 2, 9, 10.0, 0),  # label of 1 not yet known, and 1 is after the shifted window's end
        (3, delay, 3, 9, 10.0, 0),  # window (0 - 1 day, 0]: holds 1, whose label is known now
        (4, delay + DAY_S, 4, 9, 10.0, 0),  # 1-day window (0, 1 day] is empty, the 7-day one still holds 1
    ])
    f = compute_features(frame).set_index(frame[TRANSACTION_ID])
    assert f.loc[2, "TERMINAL_ID_NB_TX_30DAY_WINDOW"] == 0
    assert f.loc[2, "TERMINAL_ID_RISK_30DAY_WINDOW"] == 0.0
    assert f.loc[3, "TERMINAL_ID_NB_TX_1DAY_WINDOW"] == 1
    assert f.loc[3, "TERMINAL_ID_RISK_1DAY_WINDOW"] == 1.0
    assert f.loc[4, "TERMINAL_ID_NB_TX_1DAY_WINDOW"] == 0
    assert f.loc[4, "TERMINAL_ID_RISK_1DAY_WINDOW"] == 0.0
    assert f.loc[4, "TERMINAL_ID_NB_TX_7DAY_WINDOW"] == 1
    assert f.loc[4, "TERMINAL_ID_RISK_7DAY_WINDOW"] == 1.0


def test_without_delay_the_terminal_window_includes_this_one_and_earlier_ties_only():
    config = FeatureConfig(label_delay_days=0)
    frame = make_frame([(2, 50, 1, 9, 1.0, 1), (1, 50, 2, 9, 1.0, 0), (3, 50, 3, 9, 1.0, 0)])
    f = compute_features(frame, config).set_index(frame[TRANSACTION_ID])
    assert f.loc[1, "TERMINAL_ID_NB_TX_1DAY_WINDOW"] == 1
    assert f.loc[2, "TERMINAL_ID_NB_TX_1DAY_WINDOW"] == 2
    assert f.loc[2, "TERMINAL_ID_RISK_1DAY_WINDOW"] == 0.5
    assert f.loc[3, "TERMINAL_ID_RISK_1DAY_WINDOW"] == pytest.approx(1 / 3)


def test_missing_or_nan_labels_mean_not_fraud():
    delay = FeatureConfig().label_delay_s
    frame = make_frame([(1, 0, 1, 9, 1.0, 1), (2, delay, 2, 9, 1.0, 0)])
    with_nan = frame.assign(**{TX_FRAUD: [np.nan, 0.0]})
    no_column = frame.drop(columns=[TX_FRAUD])
    assert compute_features(frame)["TERMINAL_ID_RISK_1DAY_WINDOW"].iloc[1] == 1.0
    for variant in (with_nan, no_column):
        f = compute_features(variant)
        assert f["TERMINAL_ID_NB_TX_1DAY_WINDOW"].iloc[1] == 1
        assert f["TERMINAL_ID_RISK_1DAY_WINDOW"].iloc[1] == 0.0


def test_amount_ratio_floors_a_zero_mean():
    frame = make_frame([(1, 0, 1, 9, 0.0, 0), (2, 60, 1, 9, 5.0, 0), (3, 120, 1, 9, 0.0, 0)])
    f = compute_features(frame)["CUSTOMER_AMOUNT_RATIO_HISTORY"].to_numpy()
    assert f[0] == 1.0
    assert f[1] == 5.0 / AMOUNT_RATIO_MIN_MEAN
    assert f[2] == 0.0
    assert np.isfinite(f).all()


def test_distinct_terminals_and_novelty_over_the_day():
    frame = make_frame([
        (1, 0, 1, 7, 1.0, 0),
        (2, 3 * 3600, 1, 8, 1.0, 0),
        (3, 3.5 * 3600, 1, 7, 1.0, 0),
        (4, DAY_S + 3600, 1, 8, 1.0, 0),  # 7 at 0 s is out of the day; 8 (3 h) is in, 7 (3.5 h) is in
        (5, DAY_S + 1.5 * 3600, 1, 6, 1.0, 0),
    ])
    f = compute_features(frame)
    assert f["CUSTOMER_NB_TERMINALS_1DAY_WINDOW"].tolist() == [1, 2, 2, 2, 3]
    assert f["CUSTOMER_TERMINAL_IS_NEW"].tolist() == [1, 1, 0, 0, 1]
    assert f["CUSTOMER_NB_TX_BURST_WINDOW"].tolist() == [1, 1, 2, 1, 2]  # (t - 1 h, t]


def test_calendar_flags_on_utc_boundaries():
    saturday = pd.Timestamp("2024-01-06 00:00:00")
    times = pd.Series([saturday - pd.Timedelta("1us"), saturday, saturday + pd.Timedelta("6h59min59s"),
                       saturday + pd.Timedelta("7h"), saturday + pd.Timedelta("47h59min59s"),
                       saturday + pd.Timedelta("48h")])
    seconds = datetime_to_epoch_seconds(times)
    assert weekend_flags(seconds).tolist() == [0, 1, 1, 1, 1, 0]
    assert night_flags(seconds, 6).tolist() == [0, 1, 1, 0, 0, 1]
    tz_aware = datetime_to_epoch_seconds(times.dt.tz_localize("UTC").dt.tz_convert("Europe/Paris"))
    assert weekend_flags(tz_aware).tolist() == weekend_flags(seconds).tolist()


def test_empty_frame_gives_empty_features():
    frame = make_frame([(1, 0, 1, 1, 1.0, 0)]).iloc[:0]
    f = compute_features(frame)
    assert f.shape == (0, len(FeatureConfig().feature_names()))


@pytest.mark.parametrize("change, column, fragment", [
    (lambda f: f.drop(columns=[TX_AMOUNT]), None, TX_AMOUNT),
    (lambda f: f.assign(**{TX_AMOUNT: [1.0, -2.0, 3.0]}), TX_AMOUNT, "row 1"),
    (lambda f: f.assign(**{TX_AMOUNT: [1.0, 2.0, np.nan]}), TX_AMOUNT, "row 2"),
    (lambda f: f.assign(**{TX_DATETIME: [START, pd.NaT, START]}), TX_DATETIME, "row 1"),
    (lambda f: f.assign(**{TX_DATETIME: ["2024-01-01T00:00:00", "soon", "2024-01-02"]}), TX_DATETIME, "soon"),
    (lambda f: f.assign(**{CUSTOMER_ID: [1.0, 2.5, 3.0]}), CUSTOMER_ID, "row 1"),
    (lambda f: f.assign(**{TERMINAL_ID: [1, 2, -3]}), TERMINAL_ID, "row 2"),
    (lambda f: f.assign(**{TRANSACTION_ID: [4, 5, 4]}), TRANSACTION_ID, "more than once"),
    (lambda f: f.assign(**{TX_FRAUD: [0, 2, 1]}), TX_FRAUD, "row 1"),
])
def test_bad_input_names_column_and_row(change, column, fragment):
    frame = make_frame([(1, 0, 1, 1, 1.0, 0), (2, 10, 1, 1, 2.0, 0), (3, 20, 1, 1, 3.0, 0)])
    with pytest.raises(FeatureInputError) as error:
        compute_features(change(frame))
    assert error.value.column == column
    assert fragment in str(error.value)


def test_iso_strings_are_accepted_as_times():
    frame = make_frame([(1, 0, 1, 1, 1.0, 0), (2, 3600, 1, 1, 2.0, 0)])
    as_text = frame.assign(**{TX_DATETIME: frame[TX_DATETIME].dt.strftime("%Y-%m-%dT%H:%M:%S")})
    pd.testing.assert_frame_equal(compute_features(as_text), compute_features(frame))


def test_baseline_ratio_window_leaves_out_the_recent_days():
    config = FeatureConfig()  # baseline window (t - 30 days, t - 14 days]
    frame = make_frame([
        (1, 0, 5, 1, 10.0, 0),
        (2, 16 * DAY_S, 5, 1, 100.0, 0),  # exactly t - 14 days for transaction 4: in (closed upper edge)
        (3, 20 * DAY_S, 5, 1, 1000.0, 0),  # recent for transaction 4: out of its baseline
        (4, 30 * DAY_S, 5, 1, 50.0, 0),  # transaction 1 is exactly 30 days before: out (open lower edge)
        (5, 30 * DAY_S - 1, 5, 1, 20.0, 0),  # baseline (-1 s, 16 days - 1 s]: transaction 1 only
    ])
    f = compute_features(frame, config).set_index(frame[TRANSACTION_ID])
    assert f.loc[1, "CUSTOMER_AMOUNT_RATIO_BASELINE"] == 1.0  # no history at all
    assert f.loc[2, "CUSTOMER_AMOUNT_RATIO_BASELINE"] == 10.0
    assert f.loc[3, "CUSTOMER_AMOUNT_RATIO_BASELINE"] == 100.0
    assert f.loc[4, "CUSTOMER_AMOUNT_RATIO_BASELINE"] == 0.5
    assert f.loc[5, "CUSTOMER_AMOUNT_RATIO_BASELINE"] == 2.0
    # the history ratio does see the recent inflated amount
    assert f.loc[4, "CUSTOMER_AMOUNT_RATIO_HISTORY"] == pytest.approx(50.0 / ((100.0 + 1000.0 + 20.0) / 3))


def test_baseline_ratio_is_one_when_only_recent_transactions_exist_and_floors_zero_means():
    frame = make_frame([(1, 0, 5, 1, 0.0, 0), (2, 2 * DAY_S, 5, 1, 7.0, 0), (3, 15 * DAY_S, 5, 1, 3.0, 0)])
    f = compute_features(frame).set_index(frame[TRANSACTION_ID])
    assert f.loc[2, "CUSTOMER_AMOUNT_RATIO_BASELINE"] == 1.0  # transaction 1 is within the recent 14 days
    assert f.loc[3, "CUSTOMER_AMOUNT_RATIO_BASELINE"] == 3.0 / AMOUNT_RATIO_MIN_MEAN  # baseline: the zero amount


def test_baseline_without_recent_days_holds_this_transaction_and_earlier_ties():
    config = FeatureConfig(recent_days=0)
    frame = make_frame([(20, 100, 5, 1, 10.0, 0), (10, 100, 5, 1, 30.0, 0), (30, 0, 5, 2, 20.0, 0)])
    f = compute_features(frame, config).set_index(frame[TRANSACTION_ID])
    assert f.loc[30, "CUSTOMER_AMOUNT_RATIO_BASELINE"] == 1.0
    assert f.loc[10, "CUSTOMER_AMOUNT_RATIO_BASELINE"] == pytest.approx(30.0 / 25.0)
    assert f.loc[20, "CUSTOMER_AMOUNT_RATIO_BASELINE"] == pytest.approx(10.0 / 20.0)


def test_fraud_episode_age_counts_from_the_earliest_known_fraud_in_the_delayed_window():
    config = FeatureConfig()  # delayed 30-day window (t - 37 days, t - 7 days]
    delay, longest = config.label_delay_s, 30 * DAY_S
    frame = make_frame([
        (1, 0, 1, 9, 10.0, 1),
        (2, DAY_S, 2, 9, 10.0, 1),
        (3, 2 * DAY_S, 3, 9, 10.0, 0),
        (4, delay - 1, 4, 9, 10.0, 0),  # label of 1 not known yet (and 1 is after the window's end)
        (5, delay, 5, 9, 10.0, 0),  # 1 is at the window's end and its label is known now
        (6, delay + longest, 6, 9, 10.0, 0),  # 1 is exactly at the open start: the episode starts with 2
        (7, delay + longest + DAY_S, 7, 9, 10.0, 0),  # no fraud left in the window
        (8, delay, 8, 4, 10.0, 0),  # another terminal, no history
    ])
    f = compute_features(frame, config).set_index(frame[TRANSACTION_ID])["TERMINAL_FRAUD_EPISODE_AGE"]
    assert f.loc[1] == config.terminal_retention_s
    assert f.loc[4] == config.terminal_retention_s
    assert f.loc[5] == delay
    assert f.loc[6] == delay + longest - DAY_S
    assert f.loc[7] == config.terminal_retention_s
    assert f.loc[8] == config.terminal_retention_s


def test_fraud_episode_age_without_delay_follows_transaction_id_at_ties():
    config = FeatureConfig(label_delay_days=0)
    frame = make_frame([(2, 50, 1, 9, 1.0, 1), (1, 50, 2, 9, 1.0, 0), (3, 50, 3, 9, 1.0, 0), (4, 80, 4, 9, 1.0, 0)])
    f = compute_features(frame, config).set_index(frame[TRANSACTION_ID])["TERMINAL_FRAUD_EPISODE_AGE"]
    assert f.loc[1] == config.terminal_retention_s  # the fraud at the same time comes after it
    assert f.loc[2] == 0.0
    assert f.loc[3] == 0.0
    assert f.loc[4] == 30.0
