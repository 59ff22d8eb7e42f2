import gzip

import numpy as np
import pandas as pd
import pytest

from fraudstream.detectors.schema import ALL_COLUMNS
from fraudstream.training.datasets import DataFileError, read_transactions, select_period, write_transactions
from fraudstream.training.simulator import SimulationConfig, simulate

HEADER = "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD"
GOOD_ROWS = ["0,2018-04-01 00:00:31,596,3156,57.16,0", "1,2018-04-01 00:02:10,4961,3412,81.51,1",
             "2,2018-04-01 00:07:56,2,1365,146.00,0", "3,2018-04-01 00:09:29,4128,8737,64.49,0"]


@pytest.fixture(scope="module")
def sample():
    return simulate(SimulationConfig(n_customers=100, n_terminals=200, nb_days=5, seed=1,
                                     novel_start_date="2018-04-03"))


def write_csv(tmp_path, rows, header=HEADER, name="data.csv"):
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.mark.parametrize("name", ["tx.csv", "tx.csv.gz", "tx.parquet"])
def test_round_trip_keeps_every_value(tmp_path, sample, name):
    path = write_transactions(sample, tmp_path / name)
    back = read_transactions(path, require_labels=True)
    pd.testing.assert_frame_equal(back, sample)


def test_csv_uses_handbook_order_and_date_format(tmp_path, sample):
    shuffled = sample[list(reversed(sample.columns))].assign(NOTE="x")
    path = write_transactions(shuffled, tmp_path / "tx.csv.gz")
    with gzip.open(path, "rt") as handle:
        header, first = handle.readline().strip(), handle.readline().strip()
    assert header.split(",") == list(ALL_COLUMNS) + ["NOTE"]
    assert first.split(",")[1] == sample["TX_DATETIME"].iloc[0].strftime("%Y-%m-%d %H:%M:%S")
    assert not list(tmp_path.glob(".*partial"))


def test_same_frame_gives_the_same_compressed_file(tmp_path, sample):
    first = write_transactions(sample, tmp_path / "a.csv.gz").read_bytes()
    assert write_transactions(sample, tmp_path / "b.csv.gz").read_bytes() == first


def test_read_sorts_by_time_then_id_and_keeps_extra_columns(tmp_path):
    rows = ["7,2018-04-02 10:00:00,1,2,3.5,0,a", "5,2018-04-01 10:00:00,1,2,1.0,1,b",
            "3,2018-04-02 10:00:00,1,2,2.0,0,c"]
    frame = read_transactions(write_csv(tmp_path, rows, header=HEADER + ",NOTE"))
    assert frame["TRANSACTION_ID"].tolist() == [5, 3, 7]
    assert frame["NOTE"].tolist() == ["b", "c", "a"]
    assert frame.index.tolist() == [0, 1, 2]
    assert frame["TX_FRAUD"].dtype == np.int8
    assert frame["CUSTOMER_ID"].dtype == np.int64 and frame["TX_AMOUNT"].dtype == np.float64


def test_optional_columns_may_be_absent_and_iso_times_become_naive_utc(tmp_path):
    path = write_csv(tmp_path, ["1,2018-04-01T02:00:00+02:00,1,2,3.5"],
                     header="TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT")
    frame = read_transactions(path)
    assert "TX_FRAUD" not in frame.columns
    assert frame["TX_DATETIME"].iloc[0] == pd.Timestamp("2018-04-01 00:00:00")
    with pytest.raises(DataFileError, match="column TX_FRAUD: missing required column"):
        read_transactions(path, require_labels=True)


@pytest.mark.parametrize(
    "bad_row, line, column, words",
    [
        ("2,2018-04-01 00:07:56,2,1365,abc,0", 4, "TX_AMOUNT", "got 'abc'"),
        ("2,2018-04-01 00:07:56,2,1365,-1.5,0", 4, "TX_AMOUNT", "got -1.5"),
        ("2,2018-04-01 00:07:56,2,1365,inf,0", 4, "TX_AMOUNT", "finite"),
        ("2,2018-04-01 00:07:56,2,1365,,0", 4, "TX_AMOUNT", "missing value"),
        ("2,2018-04-31 00:07:56,2,1365,1.0,0", 4, "TX_DATETIME", "2018-04-31"),
        ("2,yesterday,2,1365,1.0,0", 4, "TX_DATETIME", "yesterday"),
        ("2.5,2018-04-01 00:07:56,2,1365,1.0,0", 4, "TRANSACTION_ID", "got 2.5"),
        ("2,2018-04-01 00:07:56,C7,1365,1.0,0", 4, "CUSTOMER_ID", "got 'C7'"),
        ("2,2018-04-01 00:07:56,2,-3,1.0,0", 4, "TERMINAL_ID", "got -3"),
        ("2,2018-04-01 00:07:56,2,1365,1.0,2", 4, "TX_FRAUD", "expected 0 or 1"),
        ("2,2018-04-01 00:07:56,2,1365,1.0,yes", 4, "TX_FRAUD", "got 'yes'"),
        ("1,2018-04-01 00:07:56,2,1365,1.0,0", 4, "TRANSACTION_ID", "duplicate id 1 (first seen in row 3)"),
        ("", 4, "TRANSACTION_ID", "missing value"),
    ],
)
def test_bad_value_names_file_row_and_column(tmp_path, bad_row, line, column, words):
    path = write_csv(tmp_path, GOOD_ROWS[:2] + [bad_row] + GOOD_ROWS[3:])
    with pytest.raises(DataFileError) as caught:
        read_transactions(path)
    error = caught.value
    assert (error.row, error.column) == (line, column)
    assert str(error).startswith(f"{path}: row {line}, column {column}: ")
    assert words in str(error)


def test_error_counts_bad_rows_and_lists_every_bad_column(tmp_path):
    rows = ["0,2018-04-01 00:00:31,596,3156,x,0", "1,2018-04-01 00:02:10,4961,3412,-1,0",
            "2,2018-04-01 00:07:56,2,1365,5,7"]
    with pytest.raises(DataFileError) as caught:
        read_transactions(write_csv(tmp_path, rows))
    error = caught.value
    assert (error.row, error.column, error.bad_rows) == (2, "TX_AMOUNT", 2)
    assert "(2 bad rows in this column)" in str(error)
    assert [(o.row, o.column) for o in error.others] == [(4, "TX_FRAUD")]
    assert "also row 4, column TX_FRAUD" in str(error)


def test_parquet_rows_are_counted_from_one(tmp_path, sample):
    broken = sample.copy()
    broken.loc[3, "TX_AMOUNT"] = -2.0
    path = tmp_path / "tx.parquet"
    broken.to_parquet(path, index=False)
    with pytest.raises(DataFileError) as caught:
        read_transactions(path)
    assert (caught.value.row, caught.value.column) == (4, "TX_AMOUNT")


def test_missing_column_is_named(tmp_path):
    path = write_csv(tmp_path, ["0,2018-04-01 00:00:31,596,57.16"],
                     header="TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TX_AMOUNT")
    with pytest.raises(DataFileError) as caught:
        read_transactions(path)
    assert caught.value.column == "TERMINAL_ID"
    assert "missing required column" in str(caught.value)


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("empty.csv", b"", "file is empty"),
        ("header.csv", (HEADER + "\n").encode(), "no data rows"),
        ("broken.csv.gz", b"this is not gzip data", "cannot read file"),
        ("broken.parquet", b"PAR1 not really", "cannot read parquet file"),
        ("ragged.csv", (HEADER + "\n" + GOOD_ROWS[0] + "\n" + GOOD_ROWS[1] + ",9\n").encode(), "line 3"),
    ],
)
def test_unreadable_files_give_a_clear_error(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataFileError, match=words) as caught:
        read_transactions(path)
    assert str(caught.value).startswith(str(path))


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(DataFileError, match="cannot read file"):
        read_transactions(tmp_path / "absent.csv")
    with pytest.raises(DataFileError, match="unknown file type"):
        read_transactions(tmp_path / "data.json")
    with pytest.raises(DataFileError, match="unknown file type"):
        write_transactions(pd.DataFrame(), tmp_path / "data.json")


def test_select_period_is_start_inclusive_end_exclusive(sample):
    start, end = pd.Timestamp("2018-04-02"), pd.Timestamp("2018-04-04")
    chosen = select_period(sample, "2018-04-02", end.to_pydatetime())
    expected = sample[(sample["TX_DATETIME"] >= start) & (sample["TX_DATETIME"] < end)]
    assert len(chosen) == len(expected) > 0
    assert chosen["TRANSACTION_ID"].tolist() == expected["TRANSACTION_ID"].tolist()
    assert chosen.index.tolist() == list(range(len(chosen)))
    assert len(select_period(sample, start=None, end=None)) == len(sample)
    assert select_period(sample, start="2018-04-03")["TX_DATETIME"].min() >= pd.Timestamp("2018-04-03")
    assert len(select_period(sample, end="2018-04-01")) == 0


def test_an_account_column_is_read_checked_and_kept_after_the_handbook_columns(tmp_path):
    header = HEADER + ",ACCOUNT_ID"
    rows = [row + f",{k % 2}" for k, row in enumerate(GOOD_ROWS)]
    frame = read_transactions(write_csv(tmp_path, rows, header))
    assert frame["ACCOUNT_ID"].tolist() == [0, 1, 0, 1] and frame["ACCOUNT_ID"].dtype == np.int64
    path = tmp_path / "out.csv"
    write_transactions(frame, path)
    assert path.read_text().splitlines()[0].endswith(",TX_FRAUD,ACCOUNT_ID")
    with pytest.raises(DataFileError) as caught:
        read_transactions(write_csv(tmp_path, rows[:2] + [GOOD_ROWS[2] + ",A9"] + rows[3:], header))
    assert (caught.value.row, caught.value.column) == (4, "ACCOUNT_ID") and "got 'A9'" in str(caught.value)
