"""Time splits leave a label-delay gap and leak nothing from validation into training."""

import numpy as np
import pandas as pd
import pytest

from fraudstream.training.splits import SplitError, make_split, split_frame


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
