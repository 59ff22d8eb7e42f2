"""Offline (batch) scoring of a period of a transaction frame with a model bundle.

Features are computed on every row before ``end`` (earlier rows are history only; the batch feature path already
counts labels only once the label delay has passed), then the rows in ``[start, end)`` are scored in chunks with
the same :meth:`Cascade.score` the stream worker uses, so decisions match the worker's for the same rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraudstream.detectors.bundle import LoadedBundle
from fraudstream.detectors.cascade.types import Decision, Stage
from fraudstream.detectors.schema import TRANSACTION_ID, TX_DATETIME, TransactionBatch

#: Rows scored per call of the cascade.
DEFAULT_CHUNK_ROWS = 50_000
#: Separator of the REASONS column.
REASON_SEPARATOR = ";"
OUTPUT_COLUMNS = [TRANSACTION_ID, "RISK", "DECISION", "STAGE", "LIGHT_SCORE", "ANOMALY_SCORE", "HEAVY_SCORE",
                  "REASONS", "MODEL_VERSION"]
PARQUET_SUFFIXES = (".parquet", ".pq")


class ScoringError(ValueError):
    """Nothing to score, or an output that cannot be written; the message gives the period or path."""


def score_frame(
    frame: pd.DataFrame,
    bundle: LoadedBundle,
    start: Any = None,
    end: Any = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> pd.DataFrame:
    """Decisions for the rows of ``frame`` (handbook columns) with ``start <= TX_DATETIME < end``.

    Returns one row per scored transaction, in the frame's order, with :data:`OUTPUT_COLUMNS`.
    """
    from fraudstream.detectors.features.batch import compute_features

    if chunk_rows < 1:
        raise ScoringError(f"chunk_rows must be >= 1, got {chunk_rows}")
    times = frame[TX_DATETIME]
    history = frame if end is None else frame[times < pd.Timestamp(end)]
    selected = np.ones(len(history), dtype=bool)
    if start is not None:
        selected &= (history[TX_DATETIME] >= pd.Timestamp(start)).to_numpy()
    if not selected.any():
        raise ScoringError(f"no transaction in [{start}, {end}) to score")
    cascade = bundle.cascade
    features = compute_features(history, bundle.feature_config)
    rows = history[selected]
    X_all = features.loc[rows.index, cascade.feature_names].to_numpy(dtype=np.float64)
    batch_all = TransactionBatch.from_frame(rows)
    parts = []
    for lo in range(0, len(rows), chunk_rows):
        hi = min(lo + chunk_rows, len(rows))
        result = cascade.score(X_all[lo:hi], batch_all.take(np.arange(lo, hi)))
        parts.append(pd.DataFrame({
            TRANSACTION_ID: batch_all.transaction_id[lo:hi],
            "RISK": result.risk,
            "DECISION": [Decision(d).name for d in result.decision],
            "STAGE": [Stage(s).name for s in result.stage],
            "LIGHT_SCORE": result.light_score,
            "ANOMALY_SCORE": result.anomaly_score,
            "HEAVY_SCORE": result.heavy_score,
            "REASONS": [REASON_SEPARATOR.join(r) for r in result.reasons],
            "MODEL_VERSION": result.model_version,
        }))
    return pd.concat(parts, ignore_index=True)[OUTPUT_COLUMNS]


def write_scores(scores: pd.DataFrame, path: str | Path) -> Path:
    """Write scores as Parquet (``.parquet`` / ``.pq``) or CSV (anything else)."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            scores.to_parquet(path, index=False)
        else:
            scores.to_csv(path, index=False)
    except OSError as exc:
        raise ScoringError(f"{path}: cannot write scores: {exc}") from None
    return path


def decision_counts(scores: pd.DataFrame) -> dict[str, int]:
    """Rows per decision, every decision listed (ALLOW, BLOCK, REVIEW)."""
    counts = scores["DECISION"].value_counts()
    return {d.name: int(counts.get(d.name, 0)) for d in Decision}
