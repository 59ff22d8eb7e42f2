"""Kernel benchmark: what one transaction costs inside the worker, by micro-batch size, without Kafka or Redis.

Per batch size (1, 10, 100, 1,000, 10,000): the incremental features (state decoded from and encoded back to
the store's bytes with the batch codec, as the worker does), then ``Cascade.score`` (rules, light model, anomaly
detector, heavy model on its routed share, policy, reasons), timed stage by stage, in us per transaction.  The
state is warmed first with the preceding days of the same simulated stream, so windows are as full as in
production.  Next to it: the naive way, one row at a time through XGBoost and PyOD.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from fraudstream.bench.common import US_PER_S, Figure

DEFAULT_SIZES = (1, 10, 100, 1000, 10_000)
#: Transactions timed per batch size and repetition (at least one batch).
ROWS_PER_SIZE = 20_000
#: Most batches timed per size and repetition (small batches).
MAX_CALLS = 400
#: Rows scored one at a time by the naive baselines.
NAIVE_ROWS = 200
NAIVE_ROWS_PYOD = 20
#: ``Cascade.score`` floor at batch 1,000 (us per transaction, reasons included).
CASCADE_FLOOR_US = 5.0
FLOOR_BATCH = 1000


class KernelData:
    """A simulated stream, its model, warmed state (bytes per key) and the rows the timings draw from."""

    def __init__(self, cascade: Any, frame: Any, warm_share: float = 0.6) -> None:
        from fraudstream.detectors.features.online import IncrementalFeatures
        from fraudstream.detectors.schema import TransactionBatch

        self.cascade = cascade
        self.features = IncrementalFeatures(cascade.feature_config)
        self.batch = TransactionBatch.from_frame(frame)
        n = len(self.batch)
        self.warm_end = int(n * warm_share)
        self.store: dict[tuple[str, int], bytes] = {}
        for start in range(0, self.warm_end, 2000):
            self.step(self.batch.take(np.arange(start, min(start + 2000, self.warm_end))))
        self.snapshot = dict(self.store)

    def step(self, batch: Any, clock: dict[str, float] | None = None) -> np.ndarray:
        """Features of one batch from the store's bytes, the store updated; ``clock`` gets the seconds spent."""
        from fraudstream.detectors.features.columns import CustomerColumns, TerminalColumns

        t0 = time.perf_counter()
        customer_ids = np.unique(batch.account).tolist()
        terminal_ids = np.unique(batch.terminal_id).tolist()
        c_raw = [self.store.get(("c", c)) for c in customer_ids]
        t_raw = [self.store.get(("t", t)) for t in terminal_ids]
        customers = CustomerColumns.from_bytes_list([c for c, r in zip(customer_ids, c_raw) if r is not None],
                                                    [r for r in c_raw if r is not None])
        terminals = TerminalColumns.from_bytes_list([t for t, r in zip(terminal_ids, t_raw) if r is not None],
                                                    [r for r in t_raw if r is not None])
        result = self.features.transform_columns(batch, customers, terminals)
        for k, raw in zip(result.customers.ids.tolist(), result.customers.to_bytes_list()):
            self.store[("c", k)] = raw
        for k, raw in zip(result.terminals.ids.tolist(), result.terminals.to_bytes_list()):
            self.store[("t", k)] = raw
        if clock is not None:
            clock["features"] = clock.get("features", 0.0) + time.perf_counter() - t0
        return result.features


def time_size(data: KernelData, size: int) -> dict[str, float]:
    """us per transaction, per stage, of batches of ``size`` consecutive transactions after the warm-up."""
    from fraudstream.detectors.cascade.cascade import TIMING_STAGES

    available = len(data.batch) - data.warm_end
    calls = max(1, min(MAX_CALLS, ROWS_PER_SIZE // size, available // size))
    data.store = dict(data.snapshot)
    clock: dict[str, float] = {}
    flagged = rows = 0
    total = 0.0
    for k in range(calls):
        index = np.arange(data.warm_end + k * size, data.warm_end + (k + 1) * size)
        batch = data.batch.take(index)
        t0 = time.perf_counter()
        X = data.step(batch, clock)
        result = data.cascade.score(X, batch, clock)
        total += time.perf_counter() - t0
        rows += size
        flagged += int(np.count_nonzero(result.decision))
    out = {name: clock.get(name, 0.0) / rows * US_PER_S for name in ("features", *TIMING_STAGES)}
    out["cascade"] = sum(out[name] for name in TIMING_STAGES)
    out["total"] = total / rows * US_PER_S
    out["flagged"] = flagged / rows
    return out


def naive_per_row(data: KernelData) -> dict[str, float]:
    """us per transaction of one-row calls: XGBoost ``predict`` on a DMatrix, PyOD ``decision_function``."""
    import xgboost as xgb

    from fraudstream.detectors.features.batch import compute_features

    stop = data.warm_end + NAIVE_ROWS
    features = compute_features(_frame_rows(data, stop), data.cascade.feature_config)
    X = np.asarray(features[data.cascade.feature_names].tail(NAIVE_ROWS), dtype=np.float64)
    light = data.cascade.light
    booster = light.booster_
    light_columns = X[:, :booster.num_features()]  # the screening features it was fitted on
    t0 = time.perf_counter()
    for row in light_columns:
        booster.predict(xgb.DMatrix(row[None, :], feature_names=light.feature_names_))
    xgb_us = (time.perf_counter() - t0) / X.shape[0] * US_PER_S
    anomaly = data.cascade.anomaly
    columns = X[:NAIVE_ROWS_PYOD][:, list(anomaly.columns)] if getattr(anomaly, "columns", None) is not None \
        else X[:NAIVE_ROWS_PYOD]
    t0 = time.perf_counter()
    for row in columns:
        anomaly.detector_.decision_function(row[None, :])
    pyod_us = (time.perf_counter() - t0) / columns.shape[0] * US_PER_S
    return {"xgboost": xgb_us, "pyod": pyod_us}


def _frame_rows(data: KernelData, stop: int):
    """The stream's first ``stop`` transactions as a frame in handbook columns."""
    import pandas as pd

    from fraudstream.detectors.schema import CUSTOMER_ID, TERMINAL_ID, TRANSACTION_ID, TX_AMOUNT, TX_DATETIME

    b = data.batch
    return pd.DataFrame({TRANSACTION_ID: b.transaction_id[:stop], CUSTOMER_ID: b.customer_id[:stop],
                         TERMINAL_ID: b.terminal_id[:stop], TX_AMOUNT: b.amount[:stop],
                         TX_DATETIME: pd.to_datetime(b.timestamp[:stop], unit="s")})


def run(cascade: Any, frame: Any, sizes: tuple[int, ...], repeats: int) -> dict[str, Any]:
    """Figures per size (median of ``repeats``) and the naive baselines."""
    data = KernelData(cascade, frame)
    per_size: dict[int, dict[str, Figure]] = {}
    for size in sizes:
        figures: dict[str, Figure] = {}
        for _ in range(repeats):
            for name, value in time_size(data, size).items():
                figures.setdefault(name, Figure("us/tx")).add(value)
        per_size[size] = figures
    naive = {"xgboost": Figure("us/tx"), "pyod": Figure("us/tx")}
    for _ in range(repeats):
        for name, value in naive_per_row(data).items():
            naive[name].add(value)
    return {"sizes": per_size, "naive": naive, "rows": len(data.batch) - data.warm_end}
