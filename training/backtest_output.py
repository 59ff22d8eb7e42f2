"""The backtest's files: ``--out``, one row per decided transaction in the columns of ``fraudstream score``, and
``--labels-out``, every label it sent with when it was known (a label file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fraudstream.detectors.schema import CUSTOMER_ID, TERMINAL_ID, TRANSACTION_ID, TX_DATETIME, TX_FRAUD
from fraudstream.training.backtest import BacktestRun
from fraudstream.training.labels import KNOWN_AT, SOURCE
from fraudstream.training.scoring import OUTPUT_COLUMNS, REASON_SEPARATOR, ScoringError, write_scores


def backtest_scores(run: BacktestRun) -> pd.DataFrame:
    """The run's decisions as a ``fraudstream score`` frame (:data:`OUTPUT_COLUMNS`, reasons joined by ``;``)."""
    frame = run.decisions[[c for c in OUTPUT_COLUMNS if c != "REASONS"]].copy()
    frame["REASONS"] = [REASON_SEPARATOR.join(r) for r in run.decisions["REASONS"]]
    return frame[OUTPUT_COLUMNS]


def write_backtest_scores(run: BacktestRun, path: str | Path) -> Path:
    """Write :func:`backtest_scores` as Parquet (``.parquet`` / ``.pq``) or CSV."""
    return write_scores(backtest_scores(run), path)


def backtest_labels(run: BacktestRun) -> pd.DataFrame:
    """Every label the run sent the worker, in the order sent, in the columns of a label file
    (``fraudstream labels export``): ``TRANSACTION_ID``, ``TX_FRAUD``, ``source``, ``known_at`` (naive UTC), and
    ``TERMINAL_ID``, ``CUSTOMER_ID`` (the card), ``TX_DATETIME``; ``fraudstream train --label-times`` reads it."""
    labels = run.labels
    to_time = lambda s: pd.to_datetime(np.asarray(s, dtype=np.float64), unit="s")  # noqa: E731
    return pd.DataFrame({
        TRANSACTION_ID: np.array([lab.transaction_id for lab in labels], dtype=np.int64),
        TX_FRAUD: np.array([lab.fraud for lab in labels], dtype=np.int8),
        SOURCE: [lab.source for lab in labels],
        KNOWN_AT: to_time([lab.known_at for lab in labels]),
        TERMINAL_ID: np.array([lab.terminal_id for lab in labels], dtype=np.int64),
        CUSTOMER_ID: np.array([lab.customer_id for lab in labels], dtype=np.int64),
        TX_DATETIME: to_time([lab.tx_timestamp for lab in labels]),
    })


def write_backtest_labels(run: BacktestRun, path: str | Path) -> Path:
    """Write :func:`backtest_labels` as Parquet (``.parquet``) or CSV."""
    path = Path(path)
    frame = backtest_labels(run)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path, index=False) if path.suffix.lower() == ".parquet" else frame.to_csv(path, index=False)
    except OSError as exc:
        raise ScoringError(f"{path}: cannot write labels: {exc}") from None
    return path
