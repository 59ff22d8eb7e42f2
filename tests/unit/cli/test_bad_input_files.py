"""Bad cells of every kind in the files of ``fraudstream replay``, ``train`` and ``score``: one clear line naming the
file, the row and the column, a non-zero exit, never a traceback."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudstream.cli.main import cli
from fraudstream.detectors.bundle import save_bundle
from fraudstream.detectors.features.definition import FEATURE_NAMES
from fraudstream.training.train import TrainSettings, fit_cascade

N_ROWS = 40
#: (column, bad cell as CSV text, what the error must say about it)
BAD_CELLS = [
    ("TX_AMOUNT", "abc", "finite number"), ("TX_AMOUNT", "nan", "finite number"),
    ("TX_AMOUNT", "inf", "finite number"), ("TX_AMOUNT", "-5.0", "finite number"),
    ("TX_AMOUNT", "1e300", "finite number"), ("TX_AMOUNT", "", "missing value"),
    ("TX_DATETIME", "9999-12-31 23:59:59", "date-time"), ("TX_DATETIME", "1970-01-01 00:00:01", "date-time"),
    ("TX_DATETIME", "2250-01-01 00:00:00", "date-time"), ("TX_DATETIME", "yesterday", "date-time"),
    ("TX_DATETIME", "", "missing value"), ("CUSTOMER_ID", "x" * 5000, "integer id"),
    ("CUSTOMER_ID", "-3", "integer id"), ("TERMINAL_ID", "1.5", "integer id"),
    ("TERMINAL_ID", "99999999999999999999999", "integer id"), ("TRANSACTION_ID", "null", "integer id"),
    ("TX_FRAUD", "2", "0 or 1"), ("TX_FRAUD", "true?", "0 or 1"),
]
COLUMNS = ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD"]


def good_rows() -> list[dict[str, str]]:
    rng = np.random.default_rng(0)
    start = pd.Timestamp("2018-04-01")
    return [{"TRANSACTION_ID": str(i), "TX_DATETIME": str(start + pd.Timedelta(seconds=600 * i)),
             "CUSTOMER_ID": str(int(rng.integers(0, 50))), "TERMINAL_ID": str(int(rng.integers(0, 80))),
             "TX_AMOUNT": f"{rng.gamma(2.0, 30.0):.2f}", "TX_FRAUD": str(int(rng.random() < 0.1))}
            for i in range(N_ROWS)]


def write_csv(path, rows, raw_line: tuple[int, bytes] | None = None) -> None:
    lines = [",".join(COLUMNS).encode()] + [",".join(r[c] for c in COLUMNS).encode() for r in rows]
    if raw_line is not None:
        lines[raw_line[0]] = raw_line[1]
    data = b"\n".join(lines) + b"\n"
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny real bundle, so that ``score`` gets as far as reading its data file."""
    rng = np.random.default_rng(1)

    def frame(days: int, start: str) -> pd.DataFrame:
        n = days * 300
        y = (rng.random(n) < 0.08).astype(np.int8)
        ts = pd.Timestamp(start) + pd.to_timedelta(np.sort(rng.uniform(0, days * 86_400, n)), unit="s")
        out = pd.DataFrame({"TRANSACTION_ID": np.arange(n), "TX_DATETIME": ts, "CUSTOMER_ID": rng.integers(0, 90, n),
                            "TERMINAL_ID": rng.integers(0, 150, n), "TX_FRAUD": y})
        for i, name in enumerate(FEATURE_NAMES):
            out[name] = rng.normal(size=n) + (i % 3 == 0) * y * 2.0
        out["TX_AMOUNT"] = rng.gamma(2.0, 30.0, n) + y * 150.0
        out["CUSTOMER_NB_TX_BURST_WINDOW"] = rng.integers(1, 4, n)
        return out

    small = TrainSettings(imbalance="none", calibration="isotonic", anomaly_methods=("IForest",),
                          anomaly_max_rows=300, light_trees=5, heavy_trees=5, heavy_depth=2, stacking_folds=2,
                          review_capacity=10)
    root = tmp_path_factory.mktemp("models")
    save_bundle(fit_cascade(frame(6, "2020-01-01"), frame(3, "2020-01-10"), small), root)
    return root


def commands(path, model_dir, out):
    return {
        "replay": ["replay", str(path), "--bootstrap-servers", "127.0.0.1:9", "--no-progress"],
        "train": ["train", str(path), "--until", "2018-04-28", "--out", str(out / "models")],
        "score": ["score", str(path), "--model", str(model_dir), "--from", "2018-04-01", "--to", "2018-04-02",
                  "--out", str(out / "scores.csv")],
    }


def assert_clear_error(result, *expected: str) -> None:
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), f"not a clean exit: {result.exception!r}"
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    for part in expected:
        assert part in text, f"{part!r} not in {text!r}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cell=st.sampled_from(BAD_CELLS), row=st.integers(0, N_ROWS - 1),
       command=st.sampled_from(["replay", "train", "score"]), suffix=st.sampled_from([".csv", ".csv.gz"]))
def test_a_bad_cell_is_named_by_file_row_and_column(cell, row, command, suffix, model_dir, tmp_path_factory):
    column, text, what = cell
    rows = good_rows()
    rows[row][column] = text
    out = tmp_path_factory.mktemp("out")
    path = out / f"data{suffix}"
    write_csv(path, rows)
    result = CliRunner().invoke(cli, commands(path, model_dir, out)[command])
    assert_clear_error(result, str(path), f"row {row + 2}", f"column {column}", what)


@pytest.mark.parametrize("command", ["replay", "train", "score"])
def test_a_duplicate_id_with_other_content_is_named(command, model_dir, tmp_path):
    rows = good_rows()
    rows[17]["TRANSACTION_ID"] = rows[3]["TRANSACTION_ID"]
    path = tmp_path / "dup.csv"
    write_csv(path, rows)
    result = CliRunner().invoke(cli, commands(path, model_dir, tmp_path)[command])
    assert_clear_error(result, str(path), "row 19", "column TRANSACTION_ID", "duplicate id 3", "row 5")


@pytest.mark.parametrize("command", ["replay", "train", "score"])
def test_bytes_that_are_not_utf8_are_named_by_row_and_column(command, model_dir, tmp_path):
    rows = good_rows()
    path = tmp_path / "latin.csv"
    line = ",".join(rows[9][c] for c in COLUMNS[:4]).encode() + b",12\xe9\xff,0"
    write_csv(path, rows, raw_line=(10, line))
    result = CliRunner().invoke(cli, commands(path, model_dir, tmp_path)[command])
    assert_clear_error(result, str(path), "row 11", "column TX_AMOUNT", "UTF-8")


@pytest.mark.parametrize("command", ["replay", "train", "score"])
@pytest.mark.parametrize("content, expected", [
    (b"", "file is empty"), (b"TRANSACTION_ID,TX_DATETIME\n1,2018-04-01 00:00:00\n", "missing required column"),
    (b"\x1f\x8b\x08garbage", "cannot read"),
])
def test_unreadable_files_are_named(command, content, expected, model_dir, tmp_path):
    path = tmp_path / ("broken.csv.gz" if content.startswith(b"\x1f\x8b") else "broken.csv")
    path.write_bytes(content)
    result = CliRunner().invoke(cli, commands(path, model_dir, tmp_path)[command])
    assert_clear_error(result, str(path), expected)


def test_a_missing_file_is_named_without_a_traceback(model_dir, tmp_path):
    for argv in commands(tmp_path / "nowhere.csv", model_dir, tmp_path).values():
        result = CliRunner().invoke(cli, argv)
        assert_clear_error(result, "nowhere.csv")
