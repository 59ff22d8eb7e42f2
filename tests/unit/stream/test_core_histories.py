"""The worker core's stored-history path (bytes decoded and encoded a batch at once) gives the features and the
stored bytes of the per-object path, batch after batch, with labels in between."""

import numpy as np

from fraudstream.detectors.features.definition import DAY_S, FeatureConfig
from fraudstream.detectors.features.online import IncrementalFeatures
from fraudstream.detectors.schema import LabelEvent, TransactionBatch
from fraudstream.stream.core.histories import learn_labels_stored, transform_stored

T0 = 1_700_000_000.0


def batches(n_batches=6, size=300, seed=3):
    rng = np.random.default_rng(seed)
    start = 0
    for b in range(n_batches):
        ts = T0 + b * 2 * DAY_S + np.sort(rng.uniform(0, 2 * DAY_S, size))
        yield TransactionBatch(np.arange(start, start + size, dtype=np.int64), ts,
                               rng.integers(0, 40, size).astype(np.int64), rng.integers(0, 25, size).astype(np.int64),
                               np.round(rng.gamma(2.0, 30.0, size), 2))
        start += size


def test_bytes_path_equals_object_path():
    features = IncrementalFeatures(FeatureConfig())
    customers_obj, terminals_obj = {}, {}
    customers_raw, terminals_raw = {}, {}
    for b, batch in enumerate(batches()):
        if b >= 2:  # frauds reported on some transactions of two batches ago, one of them on a new terminal
            ids = np.arange(0, len(batch), 37)
            labels = [LabelEvent(transaction_id=int(batch.transaction_id[i]) - 600, terminal_id=int(t),
                                 customer_id=0, tx_timestamp=float(batch.timestamp[i]) - 4 * DAY_S, fraud=True,
                                 known_at=float(batch.timestamp[i])) for i, t in
                      zip(ids, [*batch.terminal_id[ids[:-1]].tolist(), 999])]
            features.learn_labels(labels, terminals_obj)
            learn_labels_stored(features, labels, terminals_raw)
        expected = features.transform(batch, customers_obj, terminals_obj)
        got = transform_stored(features, batch, customers_raw, terminals_raw)
        np.testing.assert_array_equal(got, expected)
        assert customers_raw == {c: h.to_bytes() for c, h in customers_obj.items()}
        assert terminals_raw == {t: h.to_bytes() for t, h in terminals_obj.items()}
    assert 999 in terminals_raw
