"""The replay's default label feed (fraud reports only) gives the same features as one label per transaction."""

import numpy as np

from fraudstream.detectors.features.batch import compute_features
from fraudstream.detectors.features.definition import FeatureConfig
from fraudstream.detectors.features.online import IncrementalFeatures
from fraudstream.detectors.schema import LabelEvent, TransactionBatch
from fraudstream.stream.replay import (
    EVENT_LABEL,
    LABEL_FEED_ALL,
    LABEL_FEED_FRAUD,
    LABEL_SOURCE,
    columns_from_frame,
    plan_replay,
)
from fraudstream.training.simulator import SimulationConfig, simulate

MICRO_BATCH = 400
SIMULATION = SimulationConfig(n_customers=100, n_terminals=150, nb_days=40, seed=21, terminals_per_day=1)


def features_through_feed(frame, config, label_feed):
    """Features of every row (frame order) when the replay's plan is fed to the incremental features.

    Transactions go in micro-batches in plan order; a label ends the batch before it and is learned before the
    transactions after it, as a worker that catches up with the labels topic before each batch does.
    """
    cols = columns_from_frame(frame)
    plan = plan_replay(cols.timestamp, cols.transaction_id, cols.fraud, labels_delay_s=config.label_delay_s,
                       label_feed=label_feed)
    batch = TransactionBatch.from_frame(frame)
    features = IncrementalFeatures(config)
    customers, terminals = {}, {}
    out = np.full((len(frame), features.n_features), np.nan)
    pending: list[int] = []

    def flush():
        if pending:
            rows = np.asarray(pending)
            out[rows] = features.transform(batch.take(rows), customers, terminals)
            pending.clear()

    for kind, row in zip(plan.kind.tolist(), plan.row.tolist()):
        if kind == EVENT_LABEL:
            flush()
            t = float(cols.timestamp[row])
            features.learn_labels([LabelEvent(
                transaction_id=int(cols.transaction_id[row]), terminal_id=int(cols.terminal_id[row]),
                customer_id=int(cols.customer_id[row]), tx_timestamp=t, fraud=bool(cols.fraud[row] == 1),
                known_at=t + config.label_delay_s, source=LABEL_SOURCE)], terminals)
        else:
            pending.append(row)
            if len(pending) == MICRO_BATCH:
                flush()
    flush()
    return out, plan.n_labels


def test_fraud_reports_only_give_the_features_of_the_full_label_feed():
    frame = simulate(SIMULATION)
    config = FeatureConfig()
    fraud_only, n_fraud_labels = features_through_feed(frame, config, LABEL_FEED_FRAUD)
    every, n_labels = features_through_feed(frame, config, LABEL_FEED_ALL)

    assert n_fraud_labels == int(frame["TX_FRAUD"].sum()) > 30
    assert n_labels == len(frame) > 3 * n_fraud_labels
    np.testing.assert_array_equal(fraud_only, every)
    # and both are the training features
    expected = compute_features(frame, config).to_numpy()
    np.testing.assert_allclose(fraud_only, expected, rtol=0, atol=1e-6)
    risk = config.feature_names().index("TERMINAL_ID_RISK_30DAY_WINDOW")
    assert (expected[:, risk] > 0).sum() > 50, "the check needs terminals with known risk"
