"""Merging workbench labels into training data: known-at cut-off, the last label wins, chargebacks win ties."""

import pandas as pd
import pytest

from fraudstream.training.datasets import DataFileError
from fraudstream.training.labels import merge_labels, read_labels


def data_frame():
    return pd.DataFrame({"TRANSACTION_ID": [1, 2, 3, 4], "TX_DATETIME": pd.to_datetime(["2018-04-01"] * 4),
                         "CUSTOMER_ID": [1, 1, 2, 2], "TERMINAL_ID": [5, 5, 6, 6], "TX_AMOUNT": [10.0] * 4,
                         "TX_FRAUD": pd.array([0, 0, 1, 0], dtype="int8")})


def label_file(tmp_path, rows):
    frame = pd.DataFrame(rows, columns=["TRANSACTION_ID", "TX_FRAUD", "source", "known_at"])
    frame["TX_DATETIME"], frame["CUSTOMER_ID"], frame["TERMINAL_ID"], frame["TX_AMOUNT"] = "2018-04-01", 1, 5, 10.0
    frame["analyst"], frame["note"] = "ann", ""
    path = tmp_path / "labels.csv"
    frame.to_csv(path, index=False)
    return path


def test_the_last_known_label_wins_a_chargeback_wins_ties_and_future_labels_do_not_count(tmp_path):
    path = label_file(tmp_path, [
        (1, 1, "analyst", "2018-04-02 10:00:00"),
        (1, 0, "chargeback", "2018-04-08 00:00:00"),  # a later chargeback overrides the analyst
        (2, 1, "analyst", "2018-04-03 00:00:00"),
        (2, 0, "chargeback", "2018-04-03 00:00:00"),  # same time: the chargeback wins
        (4, 1, "analyst", "2018-05-01 00:00:00"),  # known after the training data ends
        (99, 1, "analyst", "2018-04-02 00:00:00"),  # not in the data
    ])
    merged, summary = merge_labels(data_frame(), read_labels(path), pd.Timestamp("2018-04-20"))
    assert merged["TX_FRAUD"].tolist() == [0, 0, 1, 0]
    counts = (summary.read, summary.applied, summary.changed, summary.not_yet_known, summary.not_in_data)
    assert counts == (4, 2, 0, 1, 1)
    merged, summary = merge_labels(data_frame(), read_labels(path), pd.Timestamp("2018-04-05"))
    assert merged["TX_FRAUD"].tolist() == [1, 0, 1, 0] and summary.changed == 1
    merged, _ = merge_labels(data_frame(), read_labels(path), None)
    assert merged["TX_FRAUD"].tolist() == [0, 0, 1, 1]


def test_a_bad_known_at_names_the_row_and_column(tmp_path):
    path = label_file(tmp_path, [(1, 1, "analyst", "2018-04-02"), (2, 0, "analyst", "yesterday")])
    with pytest.raises(DataFileError, match="known_at"):
        read_labels(path)
