"""The batch and the incremental execution of the feature definition give the same values on a simulated stream."""

import numpy as np
import pandas as pd
import pytest

from fraudstream.detectors.features.batch import compute_features
from fraudstream.detectors.features.definition import FeatureConfig
from fraudstream.detectors.features.online import CustomerHistory, IncrementalFeatures, TerminalHistory
from fraudstream.detectors.schema import TX_DATETIME, TX_FRAUD, LabelEvent, TransactionBatch
from fraudstream.training.simulator import SimulationConfig, simulate

MICRO_BATCH = 500
REDELIVERED_PER_BATCH = 3
#: Redeliveries are drawn from the last rows of a batch: a redelivery comes soon after the original event.
REDELIVERY_SPAN = 50
MAX_ABS_DIFF = 1e-6

SIMULATION = SimulationConfig(n_customers=120, n_terminals=200, nb_days=50, seed=11, terminals_per_day=1,
                              novel_start_date="2018-04-25")

CASES = {
    # handbook windows and delay, times to the second
    "default": (FeatureConfig(), None),
    # short windows (state trimmed often), no label delay, times floored to 15 min: many ties at one time (the
    # card's sequence holds strictly earlier times only); a shorter sequence
    "short_ties_no_delay": (FeatureConfig(customer_windows_days=(1, 3), terminal_windows_days=(1, 2),
                                          label_delay_days=0, burst_window_s=1800.0, terminal_burst_lag_s=0.0,
                                          history_days=5, recent_days=2, sequence_length=3), "15min"),
    # windows ending at t - 1 day (and the terminal burst at t - 1 h) fall on the 15-min grid (ties at the edges);
    # the baseline ends at t; no sequence
    "ties_at_window_ends_no_recent": (FeatureConfig(customer_windows_days=(1, 3), terminal_windows_days=(1, 4),
                                                    label_delay_days=1, history_days=6, recent_days=0,
                                                    sequence_length=0), "15min"),
}


def label_events(frame, known_at):
    """One label per transaction, known at ``known_at`` (epoch s), sorted by when it becomes known."""
    batch = TransactionBatch.from_frame(frame)
    fraud = frame[TX_FRAUD].to_numpy() == 1
    order = np.argsort(known_at, kind="stable")
    return [LabelEvent(transaction_id=int(batch.transaction_id[i]), terminal_id=int(batch.terminal_id[i]),
                       customer_id=int(batch.customer_id[i]), tx_timestamp=float(batch.timestamp[i]),
                       fraud=bool(fraud[i]), known_at=float(known_at[i])) for i in order]


def replay(frame, config, rng, known_at=None):
    """Features of ``frame`` from the incremental execution, fed like the stream feeds it.

    Rows go in (time, id) order in micro-batches; before each, the labels known by the end of the batch are
    learned; the state goes through ``to_bytes`` / ``from_bytes`` between batches; a few rows of each batch are
    delivered twice.  Returns the features in frame row order and the (row, features) of the redeliveries.
    """
    batch = TransactionBatch.from_frame(frame)
    order = np.lexsort((batch.transaction_id, batch.timestamp))
    labels = label_events(frame, batch.timestamp + config.label_delay_s if known_at is None else known_at)
    features = IncrementalFeatures(config)
    customers: dict[int, CustomerHistory] = {}
    terminals: dict[int, TerminalHistory] = {}
    out = np.full((len(frame), features.n_features), np.nan)
    redelivered = []
    next_label = 0
    for start in range(0, len(order), MICRO_BATCH):
        rows = order[start:start + MICRO_BATCH]
        again = rng.choice(rows[-REDELIVERY_SPAN:], size=REDELIVERED_PER_BATCH, replace=False)
        batch_end = batch.timestamp[rows].max()
        learned = next_label
        while next_label < len(labels) and labels[next_label].known_at <= batch_end:
            next_label += 1
        features.learn_labels(labels[learned:next_label], terminals)
        values = features.transform(batch.take(np.concatenate([rows, again])), customers, terminals)
        out[rows] = values[:len(rows)]
        redelivered.append((again, values[len(rows):]))
        customers = {k: CustomerHistory.from_bytes(v.to_bytes()) for k, v in customers.items()}
        terminals = {k: TerminalHistory.from_bytes(v.to_bytes()) for k, v in terminals.items()}
    return out, redelivered


@pytest.fixture(scope="module")
def simulated():
    return simulate(SIMULATION)


@pytest.mark.parametrize("case", sorted(CASES))
def test_incremental_features_equal_batch_features(simulated, case):
    config, floor = CASES[case]
    frame = simulated.copy()
    if floor:
        frame[TX_DATETIME] = frame[TX_DATETIME].dt.floor(floor)
    frame.index = pd.RangeIndex(len(frame)) * 2 + 100  # frame index is not row position
    assert frame[TX_FRAUD].sum() > 50, "the parity check needs fraud in the data"
    assert frame[TX_DATETIME].duplicated().any() or floor is None

    expected = compute_features(frame, config).to_numpy()
    online, redelivered = replay(frame, config, np.random.default_rng(5))

    assert np.isfinite(online).all()
    diff = np.abs(online - expected)
    worst = {name: float(d) for name, d in zip(config.feature_names(), diff.max(axis=0)) if d >= MAX_ABS_DIFF}
    assert not worst, f"features differ (max abs difference per feature): {worst}"
    for rows, values in redelivered:
        np.testing.assert_allclose(values, expected[rows], rtol=0, atol=MAX_ABS_DIFF)

    check_meaningful(expected, config)


def check_meaningful(expected, config):
    """The check means something: windows hold several transactions and some terminals carry known risk."""
    names = config.feature_names()
    longest = max(config.terminal_windows_days)
    assert expected[:, names.index(f"TERMINAL_ID_RISK_{longest}DAY_WINDOW")].max() > 0
    assert expected[:, names.index(f"CUSTOMER_ID_NB_TX_{max(config.customer_windows_days)}DAY_WINDOW")].max() > 5
    assert (expected[:, names.index("CUSTOMER_TERMINAL_IS_NEW")] == 0).any()
    assert (expected[:, names.index("CUSTOMER_AMOUNT_RATIO_BASELINE")] != 1.0).mean() > 0.5
    assert expected[:, names.index("TERMINAL_NB_TX_BURST_WINDOW")].max() > 3
    assert (expected[:, names.index("CUSTOMER_NB_SAME_AMOUNT")] > 0).sum() > 20
    assert np.unique(expected[:, names.index("CUSTOMER_HOUR_SHARE")]).size > 20
    assert np.abs(expected[:, names.index("CUSTOMER_AMOUNT_ZSCORE")]).max() > 2
    episode_age = expected[:, names.index("TERMINAL_FRAUD_EPISODE_AGE")]
    assert (episode_age < config.terminal_retention_s).sum() > 50



#: A label model: analysts confirm within the hour, chargebacks after 2 to 12 days.
LABEL_DELAYS_S = np.array([600.0, 3_600.0, 2 * 86_400.0, 7 * 86_400.0, 12 * 86_400.0])


def test_incremental_features_equal_batch_features_with_labels_known_at_any_time(simulated):
    config = FeatureConfig()
    frame = simulated.copy()
    rng = np.random.default_rng(8)
    known_at = TransactionBatch.from_frame(frame).timestamp + rng.choice(LABEL_DELAYS_S, size=len(frame))
    expected = compute_features(frame, config, known_at=known_at).to_numpy()
    online, _ = replay(frame, config, np.random.default_rng(5), known_at=known_at)
    diff = np.abs(online - expected)
    worst = {name: float(d) for name, d in zip(config.feature_names(), diff.max(axis=0)) if d >= MAX_ABS_DIFF}
    assert not worst, f"features differ (max abs difference per feature): {worst}"
    check_meaningful(expected, config)
    names = config.feature_names()
    fresh = expected[:, names.index("TERMINAL_NB_FRAUDS_KNOWN_1DAY")]
    assert (fresh > 0).sum() > 20, "labels known within the hour must show in the fresh counts"
    assert not np.array_equal(expected, compute_features(frame, config).to_numpy())


def test_a_file_with_accounts_gives_the_same_features_in_both_executions_keyed_by_account(simulated):
    """``ACCOUNT_ID``: cards of one account share its history in both executions; reissuing half the cards (a new
    ``CUSTOMER_ID`` from a customer's midpoint on, the account unchanged) gives the features of the file without
    reissues."""
    config = FeatureConfig()
    frame = simulated.copy()
    customer = frame["CUSTOMER_ID"].to_numpy()
    later = frame.groupby("CUSTOMER_ID").cumcount().to_numpy() >= frame.groupby("CUSTOMER_ID")["CUSTOMER_ID"] \
        .transform("size").to_numpy() // 2
    reissued = later & (customer % 2 == 0)
    frame["ACCOUNT_ID"] = customer
    frame["CUSTOMER_ID"] = np.where(reissued, customer + 10**9, customer)
    assert reissued.sum() > 500

    by_account = compute_features(frame, config).to_numpy()
    without_reissue = compute_features(simulated, config).to_numpy()
    online, _ = replay(frame, config, np.random.default_rng(5))
    np.testing.assert_allclose(by_account, without_reissue, rtol=0, atol=0)
    np.testing.assert_allclose(online, by_account, rtol=0, atol=MAX_ABS_DIFF)
    by_card = compute_features(frame.drop(columns="ACCOUNT_ID"), config).to_numpy()
    new_terminal = config.feature_names().index("CUSTOMER_TERMINAL_IS_NEW")
    assert (by_card[reissued, new_terminal] > by_account[reissued, new_terminal]).sum() > 100
