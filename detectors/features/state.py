"""Per-entity state of the online features: recent transactions of one customer and of one terminal.

:class:`CustomerHistory` and :class:`TerminalHistory` are a few parallel Python lists sorted by (timestamp,
transaction id) and searched with ``bisect``.  Both serialise to a compact little-endian binary layout
(``to_bytes`` / ``from_bytes``: a 4-byte magic, the list lengths as uint32, then each list as float64 or int64
values) so that the stream can keep them in a key-value store.  The features computed from them are in
:mod:`fraudstream.detectors.features.online`.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from typing import Sequence

_ITEM_BYTES = 8  # every stored value is a little-endian float64 ("d") or int64 ("q")
_CUSTOMER_HEADER = struct.Struct("<4sI")  # magic, number of transactions
_CUSTOMER_MAGIC = b"FSC1"
_TERMINAL_HEADER = struct.Struct("<4sII")  # magic, number of transactions, number of fraud labels
_TERMINAL_MAGIC = b"FST1"


def key_position(timestamps: list[float], transaction_ids: list[int], timestamp: float, transaction_id: int) -> int:
    """Number of entries before ``(timestamp, transaction_id)`` in (timestamp, id) order (lists sorted so)."""
    position = bisect_right(timestamps, timestamp)
    while position and timestamps[position - 1] == timestamp and transaction_ids[position - 1] >= transaction_id:
        position -= 1
    return position


def _pack(header: bytes, codes: str, columns: Sequence[list]) -> bytes:
    """``header``, then each column as little-endian values of its type code (``d`` float64, ``q`` int64)."""
    layout = "".join(f"{len(column)}{code}" for code, column in zip(codes, columns))
    return header + struct.pack(f"<{layout}", *[value for column in columns for value in column])


class _Reader:
    """Reads consecutive little-endian columns from one buffer, checking the total size first."""

    def __init__(self, data: bytes, header: struct.Struct, magic: bytes, what: str) -> None:
        if len(data) < header.size:
            raise ValueError(f"{what}: {len(data)} bytes, shorter than its {header.size}-byte header")
        fields = header.unpack_from(data)
        if fields[0] != magic:
            raise ValueError(f"{what}: bad magic {fields[0]!r}, expected {magic!r}")
        self.counts = fields[1:]
        self._data = data
        self._offset = header.size
        self._what = what

    def expect_items(self, items: int) -> None:
        expected = self._offset + items * _ITEM_BYTES
        if len(self._data) != expected:
            raise ValueError(f"{self._what}: {len(self._data)} bytes, expected {expected} for counts {self.counts}")

    def read(self, count: int, code: str) -> list:
        values = list(struct.unpack_from(f"<{count}{code}", self._data, self._offset))
        self._offset += count * _ITEM_BYTES
        return values


class CustomerHistory:
    """Recent transactions of one customer, sorted by (timestamp, transaction id).

    Attributes (parallel lists; change them only through the methods)
    ----------
    timestamps : epoch seconds.
    transaction_ids, terminal_ids : ints.
    amounts : currency units.
    """

    __slots__ = ("timestamps", "transaction_ids", "amounts", "terminal_ids")

    def __init__(self, timestamps: list[float] | None = None, transaction_ids: list[int] | None = None,
                 amounts: list[float] | None = None, terminal_ids: list[int] | None = None) -> None:
        self.timestamps = timestamps if timestamps is not None else []
        self.transaction_ids = transaction_ids if transaction_ids is not None else []
        self.amounts = amounts if amounts is not None else []
        self.terminal_ids = terminal_ids if terminal_ids is not None else []
        if not len(self.timestamps) == len(self.transaction_ids) == len(self.amounts) == len(self.terminal_ids):
            raise ValueError("CustomerHistory: the four lists must have the same length")

    def __len__(self) -> int:
        return len(self.timestamps)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CustomerHistory):
            return NotImplemented
        return (self.timestamps == other.timestamps and self.transaction_ids == other.transaction_ids
                and self.amounts == other.amounts and self.terminal_ids == other.terminal_ids)

    def __repr__(self) -> str:
        return f"CustomerHistory({len(self)} transactions)"

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
        return _pack(_CUSTOMER_HEADER.pack(_CUSTOMER_MAGIC, len(self.timestamps)), "dqdq",
                     (self.timestamps, self.transaction_ids, self.amounts, self.terminal_ids))

    @classmethod
    def from_bytes(cls, data: bytes) -> "CustomerHistory":
        """Inverse of :meth:`to_bytes`; raises ``ValueError`` on a truncated or foreign buffer."""
        reader = _Reader(data, _CUSTOMER_HEADER, _CUSTOMER_MAGIC, "customer history")
        (n,) = reader.counts
        reader.expect_items(4 * n)
        return cls(reader.read(n, "d"), reader.read(n, "q"), reader.read(n, "d"), reader.read(n, "q"))


class TerminalHistory:
    """Recent transactions of one terminal and the known fraud labels of its transactions.

    Only fraud labels are stored: a legitimate label counts as 0 in every feature, so it just removes an earlier
    fraud label of the same transaction (the latest label received wins).

    Attributes (parallel lists sorted by (timestamp, transaction id); change them only through the methods)
    ----------
    timestamps, transaction_ids : the terminal's transactions.
    fraud_timestamps, fraud_transaction_ids, fraud_known_at : fraud labels, by their transaction's time and id,
        and when each became known (epoch seconds).
    """

    __slots__ = ("timestamps", "transaction_ids", "fraud_timestamps", "fraud_transaction_ids", "fraud_known_at",
                 "max_known_at")

    def __init__(self, timestamps: list[float] | None = None, transaction_ids: list[int] | None = None,
                 fraud_timestamps: list[float] | None = None, fraud_transaction_ids: list[int] | None = None,
                 fraud_known_at: list[float] | None = None) -> None:
        self.timestamps = timestamps if timestamps is not None else []
        self.transaction_ids = transaction_ids if transaction_ids is not None else []
        self.fraud_timestamps = fraud_timestamps if fraud_timestamps is not None else []
        self.fraud_transaction_ids = fraud_transaction_ids if fraud_transaction_ids is not None else []
        self.fraud_known_at = fraud_known_at if fraud_known_at is not None else []
        if len(self.timestamps) != len(self.transaction_ids):
            raise ValueError("TerminalHistory: timestamps and transaction_ids must have the same length")
        if not len(self.fraud_timestamps) == len(self.fraud_transaction_ids) == len(self.fraud_known_at):
            raise ValueError("TerminalHistory: the three fraud label lists must have the same length")
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
                     "dqdqd", (self.timestamps, self.transaction_ids, self.fraud_timestamps,
                               self.fraud_transaction_ids, self.fraud_known_at))

    @classmethod
    def from_bytes(cls, data: bytes) -> "TerminalHistory":
        """Inverse of :meth:`to_bytes`; raises ``ValueError`` on a truncated or foreign buffer."""
        reader = _Reader(data, _TERMINAL_HEADER, _TERMINAL_MAGIC, "terminal history")
        n, m = reader.counts
        reader.expect_items(2 * n + 3 * m)
        return cls(reader.read(n, "d"), reader.read(n, "q"), reader.read(m, "d"), reader.read(m, "q"),
                   reader.read(m, "d"))
