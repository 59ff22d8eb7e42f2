"""Writes the durable label log to a file: handbook columns plus who labelled it, when it was known, the note.

Columns: ``TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_FRAUD`` (handbook names; the
datetime is the transaction's own time, UTC) and ``source`` (analyst / chargeback), ``analyst``, ``known_at``
(UTC datetime the label became known) and ``note``.  Parquet through pyarrow, CSV through pandas.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from fraudstream.detectors.schema import CUSTOMER_ID, TERMINAL_ID, TRANSACTION_ID, TX_AMOUNT, TX_DATETIME, TX_FRAUD

FORMATS = ("parquet", "csv")
LABEL_COLUMNS = (TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_FRAUD,
                 "source", "analyst", "known_at", "note")


def labels_frame(entries: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Label-log entries (:func:`~fraudstream.review_queue.journal.label_from_stream`) as a frame."""
    rows = list(entries)
    frame = pd.DataFrame({
        TRANSACTION_ID: pd.array([e["transaction_id"] for e in rows], dtype="int64"),
        TX_DATETIME: pd.to_datetime([e["tx_timestamp"] for e in rows], unit="s"),
        CUSTOMER_ID: pd.array([e["customer_id"] for e in rows], dtype="Int64"),
        TERMINAL_ID: pd.array([e["terminal_id"] for e in rows], dtype="Int64"),
        TX_AMOUNT: pd.array([e["amount"] for e in rows], dtype="float64"),
        TX_FRAUD: pd.array([int(e["fraud"]) for e in rows], dtype="int64"),
        "source": [e["source"] for e in rows],
        "analyst": [e["analyst"] for e in rows],
        "known_at": pd.to_datetime([e["known_at"] for e in rows], unit="s"),
        "note": [e["note"] for e in rows],
    }, columns=list(LABEL_COLUMNS))
    return frame


def write_labels(entries: Iterable[dict[str, Any]], path: Path, fmt: str) -> int:
    """Write the labels to ``path`` in ``fmt`` (parquet or csv); returns the number of rows."""
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    frame = labels_frame(entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, date_format="%Y-%m-%d %H:%M:%S")
    return len(frame)
