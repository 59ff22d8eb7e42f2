"""Time splits leave a label-delay gap and leak nothing from validation into training."""

import numpy as np
import pandas as pd
import pytest

from fraudstream.training.splits import SplitError, known_compromised_test_rows, make_split, split_frame


def frame(days=40, per_day=50, start="2021-03-01"):
    rng = np.random.default_rng(0)
    n = days * per_day
    ts = pd.Timestamp(start) + pd.to_timedelta(np.sort(rng.uniform(0, days * 86_400, n)), unit="s")
    return pd.DataFrame({"TX_DATETIME": ts, "TRANSACTION_ID": np.arange(n)})


def test_periods_are_ordered_with_a_gap_of_the_label_delay():
    f = frame()
    split = make_split(f.TX_DATETIME.min(), pd.Timestamp("2021-04-10"), valid_days=7, gap_days=7)
    assert split.valid_end == pd.Timestamp("2021-04-10")
    assert split.valid_start == pd.Timestamp("2021-04-03")
    assert split.train_end == pd.Timestamp("2021-03-27")
    assert split.gap_days == 7
    train, valid = split_frame(f, split)
    assert train.TX_DATETIME.max() < split.train_end <= split.valid_start <= valid.TX_DATETIME.min()
    # every training label (known 7 days after its transaction) is known before validation starts
    assert (train.TX_DATETIME + pd.Timedelta(days=7)).max() < split.valid_start
    assert set(train.TRANSACTION_ID).isdisjoint(valid.TRANSACTION_ID)
    gap = f[(f.TX_DATETIME >= split.train_end) & (f.TX_DATETIME < split.valid_start)]
    assert len(gap) > 0 and len(train) + len(valid) + len(gap) == len(f)


def test_train_days_limits_training_to_the_days_before_the_gap():
    f = frame()
    split = make_split(f.TX_DATETIME.min(), pd.Timestamp("2021-04-10"), valid_days=7, gap_days=7, train_days=5)
    train, _ = split_frame(f, split)
    assert split.train_start == pd.Timestamp("2021-03-22")
    assert train.TX_DATETIME.min() >= split.train_start


def test_too_short_data_is_refused_with_dates():
    with pytest.raises(SplitError, match="no training days"):
        make_split(pd.Timestamp("2021-03-01"), pd.Timestamp("2021-03-10"), valid_days=7, gap_days=7)
    with pytest.raises(SplitError, match="valid_days"):
        make_split(pd.Timestamp("2021-03-01"), pd.Timestamp("2021-05-10"), valid_days=0, gap_days=7)


# ---- the handbook's test set -----------------------------------------------------------------------------------


def test_known_compromised_cards_leave_the_test_days_as_their_labels_become_known():
    # train days 0-1, delay days 2-3, test days 4-5 (s = 0, train 2, delay 2, test 2)
    #            row: 0  1  2  3  4  5  6  7  8  9 10 11 12
    day = np.array([0, 1, 1, 2, 3, 4, 4, 4, 4, 5, 5, 5, 5])
    card = np.array([10, 11, 12, 13, 14, 10, 11, 13, 14, 10, 13, 14, 15])
    fraud = np.array([1, 0, 0, 1, 1, 1, 1, 0, 1, 0, 0, 1, 0])
    keep = known_compromised_test_rows(day, card, fraud, train_first_day=0, train_days=2, delay_days=2,
                                       test_days=2)
    # test day 4: known = {10} (training fraud) + frauds of delay day s+2+0-1 = 1 (none) -> 10 removed; 13 and 14
    # (frauds on delay days 2 and 3) are not known yet, 11 (legitimate in training) stays.
    # test day 5: + frauds of delay day 2 -> {10, 13}; 14 (fraud on day 3) is known only from test day 6.
    assert np.flatnonzero(keep).tolist() == [6, 7, 8, 11, 12]
    assert not keep[day < 4].any()  # training and delay rows are never test rows


def test_test_set_uses_the_first_training_day_as_its_origin_and_checks_shapes():
    day = np.array([100, 102, 102])
    card = np.array([1, 1, 2])
    fraud = np.array([1, 0, 0])
    kept = known_compromised_test_rows(day, card, fraud, train_first_day=100, train_days=1, delay_days=1,
                                       test_days=1)
    assert kept.tolist() == [False, False, True]
    with pytest.raises(ValueError, match="differ in shape"):
        known_compromised_test_rows(day, card[:2], fraud, 100, 1, 1, 1)
