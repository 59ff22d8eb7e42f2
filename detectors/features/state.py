"""Per-entity state of the online features: recent transactions of one customer and of one terminal.

:class:`CustomerHistory` and :class:`TerminalHistory` are a few parallel columns sorted by (timestamp,
transaction id) and searched with ``bisect``.  The columns are ``array.array`` of float64 (``d``) or int64 (``q``)
rather than lists: a history read from the store and written back after a few events then costs one copy of
its bytes each way, not one Python object per value.  Both serialise to a compact little-endian binary layout
(``to_bytes`` / ``from_bytes``: a 4-byte magic, the column lengths as uint32, then each column as float64 or
int64 values) so that the stream can keep them in a key-value store.  The features computed from them are in
:mod:`fraudstream.detectors.features.online`.
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Sequence

_ITEM_BYTES = 8  # every stored value is a little-endian float64 ("d") or int64 ("q")
_CUSTOMER_HEADER = struct.Struct("<4sI")  # magic, number of transactions
_CUSTOMER_MAGIC = b"FSC1"
_TERMINAL_HEADER = struct.Struct("<4sII")  # magic, number of transactions, number of fraud labels
_TERMINAL_MAGIC = b"FST1"
_BIG_ENDIAN_HOST = sys.byteorder == "big"  # the layout is little-endian; ``array`` uses the host order


def key_position(timestamps: Sequence[float], transaction_ids: Sequence[int], timestamp: float,
                 transaction_id: int) -> int:
    """Number of entries before ``(timestamp, transaction_id)`` in (timestamp, id) order (columns sorted so)."""
    position = bisect_right(timestamps, timestamp)
    while position and timestamps[position - 1] == timestamp and transaction_ids[position - 1] >= transaction_id:
        position -= 1
    return position


def _contains(values: array, value: int, start: int = 0, stop: int | None = None) -> bool:
    """Whether ``values[start:stop]`` (an int64 array) holds ``value``.

    A byte search, cheaper than ``value in values`` (which makes a Python int of every element); a match counts
    only when it starts at an element boundary.
    """
    stop = len(values) if stop is None else min(stop, len(values))
    if start >= stop:
        return False
    data = values.tobytes()
    key = value.to_bytes(_ITEM_BYTES, sys.byteorder, signed=True)
    end = stop * _ITEM_BYTES
    found = data.find(key, start * _ITEM_BYTES, end)
    while found >= 0:
        if not found % _ITEM_BYTES:
            return True
        found = data.find(key, found + 1, end)
    return False


def _pack(header: bytes, columns: Sequence[array]) -> bytes:
    """``header``, then each column's values little-endian (the columns are ``d`` float64 or ``q`` int64 arrays)."""
    if _BIG_ENDIAN_HOST:
        columns = [array(column.typecode, column) for column in columns]
        for column in columns:
            column.byteswap()
    return b"".join([header, *[column.tobytes() for column in columns]])


def _header(data: bytes, header: struct.Struct, magic: bytes, what: str) -> tuple:
    """The header fields after the magic, once the magic is checked."""
    if len(data) < header.size:
        raise ValueError(f"{what}: {len(data)} bytes, shorter than its {header.size}-byte header")
    fields = header.unpack_from(data)
    if fields[0] != magic:
        raise ValueError(f"{what}: bad magic {fields[0]!r}, expected {magic!r}")
    return fields[1:]


def _size_error(what: str, size: int, expected: int, counts: tuple) -> ValueError:
    return ValueError(f"{what}: {size} bytes, expected {expected} for counts {counts}")


def _column(data: bytes, start: int, count: int, code: str) -> array:
    """``count`` little-endian values of type ``code`` (``d`` float64, ``q`` int64) from byte ``start`` of ``data``.

    The values stay in an ``array`` (one copy of the bytes, no Python object per value): most of them are never
    looked at before the history is written back.
    """
    values = array(code, data[start:start + count * _ITEM_BYTES])
    if _BIG_ENDIAN_HOST:
        values.byteswap()
    return values


def _floats(values: Iterable[float] | None) -> array:
    """A float64 column holding ``values`` (empty for None)."""
    return array("d", values if values is not None else ())


def _ints(values: Iterable[int] | None) -> array:
    """An int64 column holding ``values`` (empty for None)."""
    return array("q", values if values is not None else ())


class CustomerHistory:
    """Recent transactions of one customer, sorted by (timestamp, transaction id).

    Attributes (parallel arrays; change them only through the methods)
    ----------
    timestamps : epoch seconds.
    transaction_ids, terminal_ids : ints.
    amounts : currency units.
    """

    __slots__ = ("timestamps", "transaction_ids", "amounts", "terminal_ids")

    def __init__(self, timestamps: Iterable[float] | None = None, transaction_ids: Iterable[int] | None = None,
                 amounts: Iterable[float] | None = None, terminal_ids: Iterable[int] | None = None) -> None:
        self.timestamps = _floats(timestamps)
        self.transaction_ids = _ints(transaction_ids)
        self.amounts = _floats(amounts)
        self.terminal_ids = _ints(terminal_ids)
        if not len(self.timestamps) == len(self.transaction_ids) == len(self.amounts) == len(self.terminal_ids):
            raise ValueError("CustomerHistory: the four columns must have the same length")

    def __len__(self) -> int:
        return len(self.timestamps)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CustomerHistory):
            return NotImplemented
        return (self.timestamps == other.timestamps and self.transaction_ids == other.transaction_ids
                and self.amounts == other.amounts and self.terminal_ids == other.terminal_ids)

    def __repr__(self) -> str:
        return f"CustomerHistory({len(self)} transactions)"

    def has_transaction(self, transaction_id: int) -> bool:
        """Whether a transaction with this id is in the history."""
        return _contains(self.transaction_ids, transaction_id)

    def used_terminal(self, terminal_id: int, start: int, stop: int) -> bool:
        """Whether one of the transactions at positions ``start`` to ``stop - 1`` was at this terminal."""
        return _contains(self.terminal_ids, terminal_id, start, stop)

    def insert(self, position: int, timestamp: float, transaction_id: int, amount: float, terminal_id: int) -> None:
        """Insert a transaction at ``position`` (its place in (timestamp, id) order, see ``key_position``)."""
        if position == len(self.timestamps):
            self.timestamps.append(timestamp)
            self.transaction_ids.append(transaction_id)
            self.amounts.append(amount)
            self.terminal_ids.append(terminal_id)
        else:
            self.timestamps.insert(position, timestamp)
            self.transaction_ids.insert(position, transaction_id)
            self.amounts.insert(position, amount)
            self.terminal_ids.insert(position, terminal_id)

    def trim(self, cutoff: float) -> None:
        """Drop transactions at or before ``cutoff`` (epoch seconds)."""
        if self.timestamps and self.timestamps[0] <= cutoff:
            keep = bisect_right(self.timestamps, cutoff)
            del self.timestamps[:keep], self.transaction_ids[:keep], self.amounts[:keep], self.terminal_ids[:keep]

    def to_bytes(self) -> bytes:
        """Compact binary form: header, then timestamps (f8), ids (i8), amounts (f8), terminal ids (i8)."""
        return _pack(_CUSTOMER_HEADER.pack(_CUSTOMER_MAGIC, len(self.timestamps)),
                     (self.timestamps, self.transaction_ids, self.amounts, self.terminal_ids))

    @classmethod
    def from_bytes(cls, data: bytes) -> CustomerHistory:
        """Inverse of :meth:`to_bytes`; raises ``ValueError`` on a truncated or foreign buffer."""
        (n,) = _header(data, _CUSTOMER_HEADER, _CUSTOMER_MAGIC, "customer history")
        start, size = _CUSTOMER_HEADER.size, n * _ITEM_BYTES
        if len(data) != start + 4 * size:
            raise _size_error("customer history", len(data), start + 4 * size, (n,))
        history = cls.__new__(cls)  # the size check above stands for the constructor's length check
        history.timestamps = _column(data, start, n, "d")
        history.transaction_ids = _column(data, start + size, n, "q")
        history.amounts = _column(data, start + 2 * size, n, "d")
        history.terminal_ids = _column(data, start + 3 * size, n, "q")
        return history


class TerminalHistory:
    """Recent transactions of one terminal and the known fraud labels of its transactions.

    Only fraud labels are stored: a legitimate label counts as 0 in every feature, so it just removes an earlier
    fraud label of the same transaction (the latest label received wins).

    Attributes (parallel arrays sorted by (timestamp, transaction id); change them only through the methods)
    ----------
    timestamps, transaction_ids : the terminal's transactions.
    fraud_timestamps, fraud_transaction_ids, fraud_known_at : fraud labels, by their transaction's time and id,
        and when each became known (epoch seconds).
    """

    __slots__ = ("timestamps", "transaction_ids", "fraud_timestamps", "fraud_transaction_ids", "fraud_known_at",
                 "max_known_at")

    def __init__(self, timestamps: Iterable[float] | None = None, transaction_ids: Iterable[int] | None = None,
                 fraud_timestamps: Iterable[float] | None = None, fraud_transaction_ids: Iterable[int] | None = None,
                 fraud_known_at: Iterable[float] | None = None) -> None:
        self.timestamps = _floats(timestamps)
        self.transaction_ids = _ints(transaction_ids)
        self.fraud_timestamps = _floats(fraud_timestamps)
        self.fraud_transaction_ids = _ints(fraud_transaction_ids)
        self.fraud_known_at = _floats(fraud_known_at)
        if len(self.timestamps) != len(self.transaction_ids):
            raise ValueError("TerminalHistory: timestamps and transaction_ids must have the same length")
        if not len(self.fraud_timestamps) == len(self.fraud_transaction_ids) == len(self.fraud_known_at):
            raise ValueError("TerminalHistory: the three fraud label columns must have the same length")
        #: Upper bound (s) of ``fraud_known_at``: when it is <= t every stored label is known at t.
        self.max_known_at = max(self.fraud_known_at, default=float("-inf"))

    def __len__(self) -> int:
        return len(self.timestamps)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TerminalHistory):
            return NotImplemented
        return (self.timestamps == other.timestamps and self.transaction_ids == other.transaction_ids
                and self.fraud_timestamps == other.fraud_timestamps
                and self.fraud_transaction_ids == other.fraud_transaction_ids
                and self.fraud_known_at == other.fraud_known_at)

    def __repr__(self) -> str:
        return f"TerminalHistory({len(self)} transactions, {len(self.fraud_timestamps)} fraud labels)"

    @property
    def labels(self) -> list[tuple[int, float, bool, float]]:
        """Stored labels as ``(transaction_id, tx_timestamp, fraud, known_at)``."""
        return [(tid, ts, True, known) for tid, ts, known in
                zip(self.fraud_transaction_ids, self.fraud_timestamps, self.fraud_known_at)]

    def insert(self, timestamp: float, transaction_id: int) -> bool:
        """Add a transaction at its place; returns False (and changes nothing) when it is already there."""
        position = key_position(self.timestamps, self.transaction_ids, timestamp, transaction_id)
        if position == len(self.timestamps):
            self.timestamps.append(timestamp)
            self.transaction_ids.append(transaction_id)
            return True
        if self.timestamps[position] == timestamp and self.transaction_ids[position] == transaction_id:
            return False
        self.timestamps.insert(position, timestamp)
        self.transaction_ids.insert(position, transaction_id)
        return True

    def set_label(self, transaction_id: int, tx_timestamp: float, fraud: bool, known_at: float) -> None:
        """Record the label of one transaction, replacing any earlier label of the same transaction."""
        try:
            old = self.fraud_transaction_ids.index(transaction_id)
        except ValueError:
            pass
        else:
            del self.fraud_timestamps[old], self.fraud_transaction_ids[old], self.fraud_known_at[old]
        if fraud:
            position = key_position(self.fraud_timestamps, self.fraud_transaction_ids, tx_timestamp, transaction_id)
            self.fraud_timestamps.insert(position, tx_timestamp)
            self.fraud_transaction_ids.insert(position, transaction_id)
            self.fraud_known_at.insert(position, known_at)
            if known_at > self.max_known_at:
                self.max_known_at = known_at

    def trim(self, cutoff: float) -> None:
        """Drop transactions and labels of transactions at or before ``cutoff`` (epoch seconds)."""
        if self.timestamps and self.timestamps[0] <= cutoff:
            keep = bisect_right(self.timestamps, cutoff)
            del self.timestamps[:keep], self.transaction_ids[:keep]
        if self.fraud_timestamps and self.fraud_timestamps[0] <= cutoff:
            keep = bisect_right(self.fraud_timestamps, cutoff)
            del self.fraud_timestamps[:keep], self.fraud_transaction_ids[:keep], self.fraud_known_at[:keep]

    def to_bytes(self) -> bytes:
        """Compact binary form: header, timestamps (f8), ids (i8), then label timestamps, ids, known_at."""
        return _pack(_TERMINAL_HEADER.pack(_TERMINAL_MAGIC, len(self.timestamps), len(self.fraud_timestamps)),
                     (self.timestamps, self.transaction_ids, self.fraud_timestamps,
                               self.fraud_transaction_ids, self.fraud_known_at))

    @classmethod
    def from_bytes(cls, data: bytes) -> TerminalHistory:
        """Inverse of :meth:`to_bytes`; raises ``ValueError`` on a truncated or foreign buffer."""
        n, m = _header(data, _TERMINAL_HEADER, _TERMINAL_MAGIC, "terminal history")
        start, size, label_size = _TERMINAL_HEADER.size, n * _ITEM_BYTES, m * _ITEM_BYTES
        if len(data) != start + 2 * size + 3 * label_size:
            raise _size_error("terminal history", len(data), start + 2 * size + 3 * label_size, (n, m))
        history = cls.__new__(cls)  # the size check above stands for the constructor's length checks
        history.timestamps = _column(data, start, n, "d")
        history.transaction_ids = _column(data, start + size, n, "q")
        start += 2 * size
        history.fraud_timestamps = _column(data, start, m, "d")
        history.fraud_transaction_ids = _column(data, start + label_size, m, "q")
        history.fraud_known_at = known_at = _column(data, start + 2 * label_size, m, "d")
        history.max_known_at = max(known_at) if known_at else float("-inf")
        return history
