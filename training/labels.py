"""Labels from the review workbench (``fraudstream labels export``) merged into training data.

A label file has the handbook columns plus ``source`` (analyst / chargeback) and ``known_at`` (when the label
became known).  A label counts only if it was known before the end of the data used for training (no label
from the future); per transaction the label known last wins, and at the same time a chargeback wins over an
analyst, so a later chargeback overrides an analyst's verdict.  The winning label replaces ``TX_FRAUD`` of
that transaction in the training frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fraudstream.detectors.schema import TRANSACTION_ID, TX_FRAUD
from fraudstream.training.datasets import DataFileError

SOURCE = "source"
KNOWN_AT = "known_at"
CHARGEBACK = "chargeback"


@dataclass(frozen=True)
class LabelMerge:
    """What merging a label file did (counts of transactions)."""

    read: int
    applied: int
    changed: int
    not_yet_known: int
    not_in_data: int

    def describe(self) -> str:
        return (f"labels: {self.read} read, {self.applied} applied ({self.changed} changed TX_FRAUD), "
                f"{self.not_yet_known} known only after the training data ends, {self.not_in_data} not in the data")


def read_labels(path: str | os.PathLike) -> pd.DataFrame:
    """Read a label file (CSV or Parquet; a transaction may have several labels).

    Returns ``TRANSACTION_ID`` (int64), ``TX_FRAUD`` (int8, 0/1), ``source`` (text) and ``known_at`` (datetime,
    naive UTC); raises :class:`DataFileError` naming the row and column of the first bad value.
    """
    path = Path(path)
    try:
        raw = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataFileError(path, None, None, f"cannot read a label file: {exc}") from None
    for column in (TRANSACTION_ID, TX_FRAUD, SOURCE, KNOWN_AT):
        if column not in raw.columns:
            raise DataFileError(path, None, column, "missing required column of a label file")
    first_row = 2 if path.suffix != ".parquet" else 1  # CSV: line 1 is the header
    ids = pd.to_numeric(raw[TRANSACTION_ID], errors="coerce")
    fraud = pd.to_numeric(raw[TX_FRAUD], errors="coerce")
    known = pd.to_datetime(raw[KNOWN_AT], errors="coerce", utc=True)
    for column, bad, what in ((TRANSACTION_ID, ids.isna() | (ids < 0) | (ids % 1 != 0), "an integer id"),
                              (TX_FRAUD, ~fraud.isin([0, 1]), "0 or 1"), (KNOWN_AT, known.isna(), "a time")):
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise DataFileError(path, first_row + row, column, f"expected {what}, got {raw[column].iloc[row]!r}")
    return pd.DataFrame({TRANSACTION_ID: ids.astype("int64"), TX_FRAUD: fraud.astype("int8"),
                         SOURCE: raw[SOURCE].astype(str), KNOWN_AT: known.dt.tz_localize(None)})


def merge_labels(data: pd.DataFrame, labels: pd.DataFrame, end: pd.Timestamp | None) -> tuple[pd.DataFrame, LabelMerge]:
    """``data`` with ``TX_FRAUD`` replaced by the winning label of each labelled transaction (see the module)."""
    known = labels if end is None else labels[labels[KNOWN_AT] < end]
    ordered = known.assign(_chargeback=(known[SOURCE] == CHARGEBACK)).sort_values([KNOWN_AT, "_chargeback"],
                                                                                  kind="stable")
    winners = ordered.drop_duplicates(TRANSACTION_ID, keep="last").set_index(TRANSACTION_ID)[TX_FRAUD]
    positions = data[TRANSACTION_ID].map(winners)
    hit = positions.notna()
    out = data.copy()
    new_values = positions[hit].astype(out[TX_FRAUD].dtype)
    changed = int((out.loc[hit, TX_FRAUD] != new_values).sum())
    out.loc[hit, TX_FRAUD] = new_values
    summary = LabelMerge(read=int(labels[TRANSACTION_ID].nunique()), applied=int(hit.sum()), changed=changed,
                         not_yet_known=int(labels[TRANSACTION_ID].nunique() - known[TRANSACTION_ID].nunique()),
                         not_in_data=int(len(winners) - hit.sum()))
    return out, summary
