"""Transaction files in handbook columns: reading with validation, writing, period selection.

Formats by suffix: ``.csv``, ``.csv.gz`` (or ``.gz``), ``.parquet`` (or ``.pq``).  Reading checks every row with
vectorized operations and raises :class:`DataFileError` naming the file, the first bad row and the column; nothing
is silently dropped or repaired.  Rows are numbered as a person finds them in the file: for CSV the line number
(the header is line 1, so the first data row is row 2), for Parquet the 1-based data row.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraudstream.detectors.schema import (
    ACCOUNT_ID,
    ALL_COLUMNS,
    CUSTOMER_ID,
    DEFAULT_EVENT_TIME_RANGE,
    EXTRA_COLUMNS,
    MAX_AMOUNT,
    REQUIRED_COLUMNS,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
    TX_FRAUD_SCENARIO,
    TX_TIME_DAYS,
    TX_TIME_SECONDS,
)

#: Text form of ``TX_DATETIME`` in CSV files (handbook format).
CSV_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: gzip level of written ``.csv.gz`` files (1: ~4x faster than 6 for a file ~13% larger).
GZIP_LEVEL = 1
#: Rows formatted at a time when writing compressed CSV (bounds memory to a few tens of MB).
CSV_CHUNK_ROWS = 200_000
CSV_SUFFIXES = (".csv", ".csv.gz", ".gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
#: Largest id accepted (ids are stored as int64).
MAX_ID = 2**63 - 1
#: Floats at or above this do not fit int64.
INT64_LIMIT = 2.0**63
#: Largest fraud scenario code (stored as int8).
MAX_SCENARIO = 127
#: Line offset of the first CSV data row (line 1 is the header).
CSV_FIRST_DATA_LINE = 2
_PARSER_LINE = re.compile(r"line (\d+)")


class DataFileError(ValueError):
    """A transaction file that cannot be used, with the place of the first problem.

    Attributes
    ----------
    path : the file.
    row : line number (CSV) or 1-based data row (Parquet) of the first bad row, or ``None`` for file-level
        problems.
    column : the column at fault, or ``None``.
    reason : what is wrong.
    bad_rows : how many rows of that column are bad (0 for file-level problems).
    others : further problems, one per other bad column, as ``DataFileError`` objects.
    """

    def __init__(self, path: str | os.PathLike, row: int | None, column: str | None, reason: str,
                 *, bad_rows: int = 0, others: tuple[DataFileError, ...] = ()) -> None:
        self.path = str(path)
        self.row = row
        self.column = column
        self.reason = reason
        self.bad_rows = bad_rows
        self.others = tuple(others)
        message = self._describe()
        for other in self.others:
            message += "; also " + other._describe(with_path=False)
        super().__init__(message)

    def _describe(self, with_path: bool = True) -> str:
        place = [f"row {self.row}"] if self.row is not None else []
        place += [f"column {self.column}"] if self.column is not None else []
        text = ", ".join(place)
        text = f"{text}: {self.reason}" if text else self.reason
        if self.bad_rows > 1:
            text += f" ({self.bad_rows} bad rows in this column)"
        return f"{self.path}: {text}" if with_path else text


@dataclass(frozen=True)
class _ColumnCheck:
    """How one column is converted: ``convert(series) -> (values, bad mask)`` and the reason shown."""

    convert: Callable[[pd.Series], tuple[np.ndarray, np.ndarray]]
    reason: str


def file_format(path: str | os.PathLike) -> str:
    """``"csv"`` or ``"parquet"`` from the file name; raises :class:`DataFileError` for other suffixes."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise DataFileError(path, None, None, f"unknown file type: expected one of "
                                          f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}")


# ---- column conversions (vectorized; return values and a mask of bad rows) ---------------------------------

def _numbers(series: pd.Series) -> np.ndarray:
    """float64 values, NaN where a value is missing or not a number."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(series.astype(str), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _integers(series: pd.Series, low: int, high: int) -> tuple[np.ndarray, np.ndarray]:
    """int64 values in ``[low, high]``; exact for integer columns and integer text."""
    if pd.api.types.is_integer_dtype(series.dtype) and not series.hasnans:
        values = series.to_numpy()
        bad = (values < low) | (values > high)
        return values.astype(np.int64, copy=False) if not bad.any() else np.zeros(len(values), np.int64), bad
    if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        try:
            exact = pd.to_numeric(series.astype(str))
        except (ValueError, TypeError):
            exact = None
        if exact is not None and pd.api.types.is_integer_dtype(exact.dtype):
            return _integers(exact, low, high)
    floats = _numbers(series)
    with np.errstate(invalid="ignore"):
        bad = (~np.isfinite(floats) | (floats != np.floor(floats)) | (floats < low) | (floats > high)
               | (floats >= INT64_LIMIT))
    return np.where(bad, 0, floats).astype(np.int64), bad


def _ids(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    return _integers(series, 0, MAX_ID)


def _amounts(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    values = _numbers(series)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (values < 0) | (values > MAX_AMOUNT)
    return values, bad


def _fraud_flags(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    values = _numbers(series)
    bad = ~((values == 0) | (values == 1))
    return np.where(bad, 0, values).astype(np.int8), bad


def _scenarios(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    values, bad = _integers(series, 0, MAX_SCENARIO)
    return values.astype(np.int8), bad


def _datetimes(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """datetime64[ns] naive UTC; text in the handbook format or ISO 8601 (offsets converted to UTC)."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        parsed = series.dt.tz_convert("UTC").dt.tz_localize(None)
    elif pd.api.types.is_datetime64_dtype(series.dtype):
        parsed = series
    else:
        text = series.astype(str)
        parsed = pd.to_datetime(text, format=CSV_DATETIME_FORMAT, errors="coerce")
        if parsed.isna().any():
            parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True).dt.tz_localize(None)
    lowest = pd.Timestamp(DEFAULT_EVENT_TIME_RANGE.earliest_s, unit="s")
    highest = pd.Timestamp(DEFAULT_EVENT_TIME_RANGE.latest_s, unit="s")
    outside = (parsed < lowest) | (parsed >= highest)
    bad = (parsed.isna() | outside).to_numpy()
    values = parsed.where(~outside.to_numpy(), pd.NaT).to_numpy().astype("datetime64[ns]")
    return values, bad


def _date_of(epoch_s: float) -> str:
    return pd.Timestamp(epoch_s, unit="s").strftime("%Y-%m-%d")


COLUMN_CHECKS: dict[str, _ColumnCheck] = {
    TRANSACTION_ID: _ColumnCheck(_ids, "expected an integer id >= 0"),
    TX_DATETIME: _ColumnCheck(_datetimes, "expected a date-time like 2018-04-01 00:00:31, from "
                                          f"{_date_of(DEFAULT_EVENT_TIME_RANGE.earliest_s)} to before "
                                          f"{_date_of(DEFAULT_EVENT_TIME_RANGE.latest_s)}"),
    CUSTOMER_ID: _ColumnCheck(_ids, "expected an integer id >= 0"),
    TERMINAL_ID: _ColumnCheck(_ids, "expected an integer id >= 0"),
    TX_AMOUNT: _ColumnCheck(_amounts, f"expected a finite number >= 0 and <= {MAX_AMOUNT:g}"),
    TX_TIME_SECONDS: _ColumnCheck(lambda s: _integers(s, 0, MAX_ID), "expected an integer >= 0"),
    TX_TIME_DAYS: _ColumnCheck(lambda s: _integers(s, 0, MAX_ID), "expected an integer >= 0"),
    TX_FRAUD: _ColumnCheck(_fraud_flags, "expected 0 or 1"),
    TX_FRAUD_SCENARIO: _ColumnCheck(_scenarios, f"expected an integer scenario code 0..{MAX_SCENARIO}"),
    ACCOUNT_ID: _ColumnCheck(_ids, "expected an integer id >= 0"),
}


def _shown(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    try:
        missing = value is None or bool(pd.isna(value)) or (isinstance(value, str) and not value.strip())
    except (TypeError, ValueError):
        missing = False
    return "missing value" if missing else f"got {value!r}"


# ---- reading -----------------------------------------------------------------------------------------------

def _load_raw(path: Path, kind: str) -> pd.DataFrame:
    """The file's cells as parsed (CSV: numbers where a whole column is numeric, else text; dates as text)."""
    try:
        if path.is_dir():
            raise DataFileError(path, None, None, "cannot read file: is a directory")
        if path.stat().st_size == 0:
            raise DataFileError(path, None, None, "file is empty")
        if kind == "parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={TX_DATETIME: str}, na_filter=False, skip_blank_lines=False,
                           compression="gzip" if path.name.lower().endswith(".gz") else None)
    except DataFileError:
        raise
    except pd.errors.EmptyDataError:
        raise DataFileError(path, None, None, "file is empty (no header)") from None
    except pd.errors.ParserError as exc:
        match = _PARSER_LINE.search(str(exc))
        row = int(match.group(1)) if match else None
        raise DataFileError(path, row, None, f"malformed CSV: {exc}") from None
    except UnicodeDecodeError as exc:
        raise _undecodable(path, exc) from None
    except (OSError, EOFError) as exc:
        raise DataFileError(path, None, None, f"cannot read file: {exc}") from None
    except Exception as exc:  # pyarrow raises its own types for broken Parquet files
        raise DataFileError(path, None, None, f"cannot read {kind} file: {type(exc).__name__}: {exc}") from None


def _undecodable(path: Path, exc: UnicodeDecodeError) -> DataFileError:
    """The first line (and its column) of a CSV file that is not UTF-8, found by reading the lines again."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    header: list[str] = []
    try:
        with opener(path, "rb") as fh:
            for number, line in enumerate(fh, start=1):
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as bad:
                    cells = line[:bad.start].count(b",")
                    column = header[cells] if cells < len(header) else None
                    return DataFileError(path, number if number > 1 else None, column,
                                         f"not UTF-8 text (byte 0x{line[bad.start]:02x}); save the file as UTF-8")
                if number == 1:
                    header = [name.strip() for name in text.rstrip("\r\n").split(",")]
    except (OSError, EOFError):
        pass
    return DataFileError(path, None, None, f"not UTF-8 text: {exc}")


def read_transactions(path: str | os.PathLike, *, require_labels: bool = False) -> pd.DataFrame:
    """Read and validate a transaction file in handbook columns.

    Parameters
    ----------
    path : ``.csv``, ``.csv.gz`` or ``.parquet`` file.
    require_labels : also require ``TX_FRAUD``.

    Returns
    -------
    DataFrame sorted stably by (``TX_DATETIME``, ``TRANSACTION_ID``), index 0..n-1; ``TX_DATETIME``
    datetime64[ns] naive UTC, ids and ``TX_TIME_*`` int64, ``TX_AMOUNT`` float64, ``TX_FRAUD`` and
    ``TX_FRAUD_SCENARIO`` int8.  Handbook columns come first in handbook order, then any extra columns as read.

    Raises
    ------
    DataFileError : unreadable or empty file, missing column, or bad values (first bad row of each bad column).
    """
    path = Path(path)
    kind = file_format(path)
    raw = _load_raw(path, kind)
    required = REQUIRED_COLUMNS + ((TX_FRAUD,) if require_labels else ())
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise DataFileError(path, None, missing[0], f"missing required column (file has: "
                                                     f"{', '.join(map(str, raw.columns))})")
    if len(raw) == 0:
        raise DataFileError(path, None, None, "no data rows")
    first_row = CSV_FIRST_DATA_LINE if kind == "csv" else 1

    columns: dict[str, Any] = {}
    problems: list[DataFileError] = []
    for name in ALL_COLUMNS + EXTRA_COLUMNS:
        if name not in raw.columns:
            continue
        check = COLUMN_CHECKS[name]
        values, bad = check.convert(raw[name])
        if bad.any():
            i = int(np.argmax(bad))
            problems.append(DataFileError(path, first_row + i, name, f"{check.reason}, {_shown(raw[name].iloc[i])}",
                                          bad_rows=int(bad.sum())))
        columns[name] = values
    if not problems:
        duplicated = pd.Series(columns[TRANSACTION_ID]).duplicated(keep="first").to_numpy()
        if duplicated.any():
            i = int(np.argmax(duplicated))
            first = int(np.argmax(columns[TRANSACTION_ID] == columns[TRANSACTION_ID][i]))
            problems.append(DataFileError(path, first_row + i, TRANSACTION_ID,
                                          f"duplicate id {columns[TRANSACTION_ID][i]} (first seen in row "
                                          f"{first_row + first})", bad_rows=int(duplicated.sum())))
    if problems:
        problems.sort(key=lambda p: -1 if p.row is None else p.row)
        head = problems[0]
        raise DataFileError(path, head.row, head.column, head.reason, bad_rows=head.bad_rows,
                            others=tuple(problems[1:]))

    frame = pd.DataFrame(columns)
    for extra in raw.columns:
        if extra not in columns:
            frame[extra] = raw[extra].to_numpy()
    order = np.lexsort((columns[TRANSACTION_ID], columns[TX_DATETIME]))
    if not (order == np.arange(len(order))).all():
        frame = frame.take(order)
    return frame.reset_index(drop=True)


# ---- writing -----------------------------------------------------------------------------------------------

def write_transactions(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``frame`` to ``path`` (format by suffix), handbook columns first; returns the path written.

    CSV files get ``TX_DATETIME`` as ``YYYY-MM-DD HH:MM:SS`` (sub-second parts are dropped); Parquet keeps
    the timestamp type.  The file appears complete or not at all (written to a temporary name, then renamed);
    missing parent folders are created.
    """
    path = Path(path)
    kind = file_format(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"write_transactions: frame lacks required column(s) {', '.join(missing)}")
    known = ALL_COLUMNS + EXTRA_COLUMNS
    ordered = [c for c in known if c in frame.columns] + [c for c in frame.columns if c not in known]
    out = frame[ordered]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    try:
        if kind == "parquet":
            out.to_parquet(temporary, index=False)
        else:
            out = out.assign(**{TX_DATETIME: pd.to_datetime(out[TX_DATETIME]).dt.strftime(CSV_DATETIME_FORMAT)})
            if path.name.lower().endswith(".gz"):
                # no file name and time in the gzip header: the same frame always gives the same bytes
                with open(temporary, "wb") as raw, \
                        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0) as gz:
                    for lo in range(0, max(len(out), 1), CSV_CHUNK_ROWS):
                        chunk = out.iloc[lo : lo + CSV_CHUNK_ROWS]
                        gz.write(chunk.to_csv(index=False, header=lo == 0, lineterminator="\n").encode("utf-8"))
            else:
                out.to_csv(temporary, index=False, lineterminator="\n")
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


# ---- selection ---------------------------------------------------------------------------------------------

def _naive_utc(moment: str | datetime | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp


def select_period(frame: pd.DataFrame, start: str | datetime | None = None,
                  end: str | datetime | None = None) -> pd.DataFrame:
    """Rows with ``start <= TX_DATETIME < end`` (either bound optional; aware times are converted to UTC).

    Returns a new frame with index 0..n-1, rows in their original order.
    """
    times = frame[TX_DATETIME]
    keep = np.ones(len(frame), dtype=bool)
    if start is not None:
        keep &= (times >= _naive_utc(start)).to_numpy()
    if end is not None:
        keep &= (times < _naive_utc(end)).to_numpy()
    return frame.loc[keep].reset_index(drop=True)
