"""The backtest's ``--out`` file: one row per decided transaction in the columns of ``fraudstream score``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fraudstream.training.backtest import BacktestRun
from fraudstream.training.scoring import OUTPUT_COLUMNS, REASON_SEPARATOR, write_scores


def backtest_scores(run: BacktestRun) -> pd.DataFrame:
    """The run's decisions as a ``fraudstream score`` frame (:data:`OUTPUT_COLUMNS`, reasons joined by ``;``)."""
    frame = run.decisions[[c for c in OUTPUT_COLUMNS if c != "REASONS"]].copy()
    frame["REASONS"] = [REASON_SEPARATOR.join(r) for r in run.decisions["REASONS"]]
    return frame[OUTPUT_COLUMNS]


def write_backtest_scores(run: BacktestRun, path: str | Path) -> Path:
    """Write :func:`backtest_scores` as Parquet (``.parquet`` / ``.pq``) or CSV."""
    return write_scores(backtest_scores(run), path)
