"""Columnar state of many customers or terminals at once, for the vectorized incremental features.

:class:`CustomerColumns` and :class:`TerminalColumns` hold the histories of a set of entities as concatenated
numpy columns with per-entity offsets (``starts``; entity ``i`` owns rows ``starts[i]:starts[i + 1]``, sorted by
(timestamp, transaction id)).  They convert to and from the per-entity classes of
:mod:`~fraudstream.detectors.features.state` and, without one Python object per entity beyond the bytes
themselves, to and from lists of the very bytes ``to_bytes`` writes (:meth:`CustomerColumns.from_bytes_list`,
:meth:`CustomerColumns.to_bytes_list`): a batch of state read from a key-value store is decoded with a few numpy
calls whatever its number of entities.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from fraudstream.detectors.features.state import CustomerHistory, TerminalHistory

_F8, _I8 = np.dtype("<f8"), np.dtype("<i8")
_CUSTOMER_MAGIC = b"FSC1"
_TERMINAL_MAGIC = b"FST1"
_CUSTOMER_HEADER_BYTES = 8  # magic, uint32 number of transactions
_TERMINAL_HEADER_BYTES = 12  # magic, uint32 number of transactions, uint32 number of fraud labels
_MAGIC_U32 = {magic: struct.unpack("<I", magic)[0] for magic in (_CUSTOMER_MAGIC, _TERMINAL_MAGIC)}


def ragged_index(starts: np.ndarray, stops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ``arange(starts[k], stops[k])`` for every k, and the k of each element (int64 arrays)."""
    lengths = np.maximum(stops - starts, 0)
    total = int(lengths.sum())
    owner = np.repeat(np.arange(lengths.shape[0]), lengths)
    if not total:
        return np.zeros(0, dtype=np.int64), owner
    first = np.cumsum(lengths) - lengths  # position of each segment's first element in the output
    return starts[owner] + (np.arange(total) - first[owner]), owner


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _gather(starts: np.ndarray, entities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row index of the given entities' rows (in that entity order) and their new offsets."""
    rows, _ = ragged_index(starts[entities], starts[entities + 1])
    return rows, _offsets(starts[entities + 1] - starts[entities])


def _joined(columns: Sequence[array], dtype: np.dtype) -> np.ndarray:
    """The ``array`` columns (host byte order) concatenated into one writable numpy array."""
    return np.frombuffer(b"".join(columns), dtype=dtype).copy() if columns else _empty(dtype)


def _array(code: str, values: np.ndarray) -> array:
    """An ``array`` of ``code`` holding ``values`` (one copy of their bytes)."""
    out = array(code)
    out.frombytes(np.ascontiguousarray(values).view(np.uint8).data)
    return out


def _empty(dtype: np.dtype = _F8) -> np.ndarray:
    return np.zeros(0, dtype=dtype)


@njit(cache=True, nogil=True)
def _read(aligned, shifted, byte_starts, counts, out):  # pragma: no cover - compiled
    """Copy ``counts[k]`` 8-byte values from byte ``byte_starts[k]`` (a multiple of 4) for every k into ``out``."""
    position = 0
    for k in range(byte_starts.shape[0]):
        start = byte_starts[k]
        base = start // 8
        if start % 8 == 0:
            for i in range(counts[k]):
                out[position + i] = aligned[base + i]
        else:  # element j of ``shifted`` starts at byte 8 j + 4
            for i in range(counts[k]):
                out[position + i] = shifted[base + i]
        position += counts[k]


@njit(cache=True, nogil=True)
def _write(aligned, shifted, byte_starts, counts, values):  # pragma: no cover - compiled
    """Inverse of :func:`_read`: ``values`` (concatenated) to ``counts[k]`` slots at byte ``byte_starts[k]``."""
    position = 0
    for k in range(byte_starts.shape[0]):
        start = byte_starts[k]
        base = start // 8
        if start % 8 == 0:
            for i in range(counts[k]):
                aligned[base + i] = values[position + i]
        else:
            for i in range(counts[k]):
                shifted[base + i] = values[position + i]
        position += counts[k]


class _Buffer:
    """A joined byte buffer read as little-endian 8-byte values at any 4-byte-aligned offset."""

    def __init__(self, data: bytes) -> None:
        self.size = len(data)
        padded = np.frombuffer(data + bytes(8), dtype=np.uint8)
        self._views = {dtype: (padded[: (padded.shape[0]) // 8 * 8].view(dtype),
                               padded[4: 4 + (padded.shape[0] - 4) // 8 * 8].view(dtype)) for dtype in (_F8, _I8)}
        self.u32 = padded[: padded.shape[0] // 4 * 4].view("<u4")

    def values(self, dtype: np.dtype, byte_starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """The ``counts[k]`` 8-byte values at byte ``byte_starts[k]`` for every k, concatenated."""
        aligned, shifted = self._views[dtype]
        out = np.empty(int(counts.sum()), dtype=dtype)
        _read(aligned, shifted, byte_starts, counts, out)
        return out


class _Writer:
    """A byte buffer written as 4-byte words and 8-byte little-endian values at 4-byte-aligned offsets."""

    def __init__(self, size: int) -> None:
        self._data = np.zeros(size + 8, dtype=np.uint8)
        self.size = size
        self.u32 = self._data[: (size + 8) // 4 * 4].view("<u4")
        self._views = {dtype: (self._data[: (size + 8) // 8 * 8].view(dtype),
                               self._data[4: 4 + (size + 4) // 8 * 8].view(dtype)) for dtype in (_F8, _I8)}

    def put(self, values: np.ndarray, byte_starts: np.ndarray, counts: np.ndarray) -> None:
        dtype = _F8 if values.dtype.kind == "f" else _I8
        aligned, shifted = self._views[dtype]
        _write(aligned, shifted, byte_starts, counts, np.ascontiguousarray(values, dtype=dtype))

    def split(self, starts: np.ndarray) -> list[bytes]:
        data = self._data[: self.size].tobytes()
        bounds = starts.tolist()
        return [data[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _frame(raws: Sequence[bytes], header_bytes: int, magic: bytes, what: str) -> tuple[_Buffer, np.ndarray]:
    """The joined buffer of ``raws`` and each entry's byte offset (len + 1), once every magic is checked."""
    sizes = np.fromiter(map(len, raws), dtype=np.int64, count=len(raws))
    starts = _offsets(sizes)
    short = np.flatnonzero(sizes < header_bytes)
    if short.size:
        raise ValueError(f"{what} {int(short[0])}: {int(sizes[short[0]])} bytes, shorter than its "
                         f"{header_bytes}-byte header")
    buffer = _Buffer(b"".join(raws))
    bad = np.flatnonzero(buffer.u32[starts[:-1] // 4] != _MAGIC_U32[magic])
    if bad.size:
        k = int(bad[0])
        raise ValueError(f"{what} {k}: bad magic {bytes(raws[k][:4])!r}, expected {magic!r}")
    return buffer, starts


@dataclass
class CustomerColumns:
    """Histories of several customers (see :class:`~fraudstream.detectors.features.state.CustomerHistory`).

    ids : int64 customer ids, one per entity; starts : int64 offsets (len(ids) + 1); the other columns are the
    concatenated histories (timestamps in epoch s, amounts in currency units).
    """

    ids: np.ndarray
    starts: np.ndarray
    timestamp: np.ndarray
    transaction_id: np.ndarray
    amount: np.ndarray
    terminal_id: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def empty(cls, ids: np.ndarray) -> CustomerColumns:
        ids = np.asarray(ids, dtype=np.int64)
        return cls(ids, np.zeros(ids.shape[0] + 1, dtype=np.int64), _empty(), _empty(_I8), _empty(), _empty(_I8))

    def take(self, entities: np.ndarray) -> CustomerColumns:
        """The given entities (positions), in that order."""
        rows, starts = _gather(self.starts, entities)
        return CustomerColumns(self.ids[entities], starts, self.timestamp[rows], self.transaction_id[rows],
                               self.amount[rows], self.terminal_id[rows])

    @classmethod
    def from_histories(cls, ids: Sequence[int], histories: Sequence[CustomerHistory | None]) -> CustomerColumns:
        """Columns of these histories (None: an empty history)."""
        present = [h for h in histories if h is not None]
        lengths = np.asarray([len(h) if h is not None else 0 for h in histories], dtype=np.int64)

        def column(name: str, dtype: np.dtype) -> np.ndarray:
            return _joined([getattr(h, name) for h in present], dtype)

        return cls(np.asarray(ids, dtype=np.int64), _offsets(lengths), column("timestamps", _F8),
                   column("transaction_ids", _I8), column("amounts", _F8),
                   column("terminal_ids", _I8))

    def history(self, k: int) -> CustomerHistory:
        """Entity ``k`` as a :class:`CustomerHistory`."""
        a, b = int(self.starts[k]), int(self.starts[k + 1])
        out = CustomerHistory.__new__(CustomerHistory)
        out.timestamps = _array("d", self.timestamp[a:b])
        out.transaction_ids = _array("q", self.transaction_id[a:b])
        out.amounts = _array("d", self.amount[a:b])
        out.terminal_ids = _array("q", self.terminal_id[a:b])
        return out

    @classmethod
    def from_bytes_list(cls, ids: Sequence[int], raws: Sequence[bytes]) -> CustomerColumns:
        """Decode ``CustomerHistory.to_bytes()`` outputs of these customers at once; ``ValueError`` when one is
        truncated or foreign (names its position in ``raws``)."""
        buffer, starts = _frame(raws, _CUSTOMER_HEADER_BYTES, _CUSTOMER_MAGIC, "customer history")
        counts = buffer.u32[starts[:-1] // 4 + 1].astype(np.int64)
        expected = _CUSTOMER_HEADER_BYTES + 32 * counts
        bad = np.flatnonzero(expected != np.diff(starts))
        if bad.size:
            k = int(bad[0])
            raise ValueError(f"customer history {k}: {int(np.diff(starts)[k])} bytes, expected {int(expected[k])} "
                             f"for counts ({int(counts[k])},)")
        first = starts[:-1] + _CUSTOMER_HEADER_BYTES
        return cls(np.asarray(ids, dtype=np.int64), _offsets(counts), buffer.values(_F8, first, counts),
                   buffer.values(_I8, first + 8 * counts, counts), buffer.values(_F8, first + 16 * counts, counts),
                   buffer.values(_I8, first + 24 * counts, counts))

    def to_bytes_list(self) -> list[bytes]:
        """``CustomerHistory.to_bytes()`` of every entity, in order."""
        counts = np.diff(self.starts)
        starts = _offsets(_CUSTOMER_HEADER_BYTES + 32 * counts)
        out = _Writer(int(starts[-1]))
        words = starts[:-1] // 4
        out.u32[words] = _MAGIC_U32[_CUSTOMER_MAGIC]
        out.u32[words + 1] = counts
        first = starts[:-1] + _CUSTOMER_HEADER_BYTES
        for j, column in enumerate((self.timestamp, self.transaction_id, self.amount, self.terminal_id)):
            out.put(column, first + 8 * j * counts, counts)
        return out.split(starts)


@dataclass
class TerminalColumns:
    """Histories of several terminals (see :class:`~fraudstream.detectors.features.state.TerminalHistory`).

    ids, starts, timestamp, transaction_id : as in :class:`CustomerColumns`; fraud_starts : offsets of each
    entity's fraud labels in fraud_timestamp, fraud_transaction_id, fraud_known_at (sorted by (timestamp, id)).
    """

    ids: np.ndarray
    starts: np.ndarray
    timestamp: np.ndarray
    transaction_id: np.ndarray
    fraud_starts: np.ndarray
    fraud_timestamp: np.ndarray
    fraud_transaction_id: np.ndarray
    fraud_known_at: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def empty(cls, ids: np.ndarray) -> TerminalColumns:
        ids = np.asarray(ids, dtype=np.int64)
        zeros = np.zeros(ids.shape[0] + 1, dtype=np.int64)
        return cls(ids, zeros, _empty(), _empty(_I8), zeros.copy(), _empty(), _empty(_I8), _empty())

    def take(self, entities: np.ndarray) -> TerminalColumns:
        rows, starts = _gather(self.starts, entities)
        labels, fraud_starts = _gather(self.fraud_starts, entities)
        return TerminalColumns(self.ids[entities], starts, self.timestamp[rows], self.transaction_id[rows],
                               fraud_starts, self.fraud_timestamp[labels], self.fraud_transaction_id[labels],
                               self.fraud_known_at[labels])

    @classmethod
    def from_histories(cls, ids: Sequence[int], histories: Sequence[TerminalHistory | None]) -> TerminalColumns:
        present = [h for h in histories if h is not None]
        lengths = np.asarray([len(h) if h is not None else 0 for h in histories], dtype=np.int64)
        label_lengths = np.asarray([len(h.fraud_timestamps) if h is not None else 0 for h in histories],
                                   dtype=np.int64)

        def column(name: str, dtype: np.dtype) -> np.ndarray:
            return _joined([getattr(h, name) for h in present], dtype)

        return cls(np.asarray(ids, dtype=np.int64), _offsets(lengths), column("timestamps", _F8),
                   column("transaction_ids", _I8), _offsets(label_lengths),
                   column("fraud_timestamps", _F8), column("fraud_transaction_ids", _I8),
                   column("fraud_known_at", _F8))

    def history(self, k: int) -> TerminalHistory:
        a, b = int(self.starts[k]), int(self.starts[k + 1])
        c, d = int(self.fraud_starts[k]), int(self.fraud_starts[k + 1])
        out = TerminalHistory.__new__(TerminalHistory)
        out.timestamps = _array("d", self.timestamp[a:b])
        out.transaction_ids = _array("q", self.transaction_id[a:b])
        out.fraud_timestamps = _array("d", self.fraud_timestamp[c:d])
        out.fraud_transaction_ids = _array("q", self.fraud_transaction_id[c:d])
        out.fraud_known_at = known = _array("d", self.fraud_known_at[c:d])
        out.max_known_at = max(known) if known else float("-inf")
        return out

    @classmethod
    def from_bytes_list(cls, ids: Sequence[int], raws: Sequence[bytes]) -> TerminalColumns:
        """Decode ``TerminalHistory.to_bytes()`` outputs of these terminals at once (see CustomerColumns)."""
        buffer, starts = _frame(raws, _TERMINAL_HEADER_BYTES, _TERMINAL_MAGIC, "terminal history")
        words = starts[:-1] // 4
        n = buffer.u32[words + 1].astype(np.int64)
        m = buffer.u32[words + 2].astype(np.int64)
        expected = _TERMINAL_HEADER_BYTES + 16 * n + 24 * m
        bad = np.flatnonzero(expected != np.diff(starts))
        if bad.size:
            k = int(bad[0])
            raise ValueError(f"terminal history {k}: {int(np.diff(starts)[k])} bytes, expected {int(expected[k])} "
                             f"for counts ({int(n[k])}, {int(m[k])})")
        first = starts[:-1] + _TERMINAL_HEADER_BYTES
        labels = first + 16 * n
        return cls(np.asarray(ids, dtype=np.int64), _offsets(n), buffer.values(_F8, first, n),
                   buffer.values(_I8, first + 8 * n, n), _offsets(m), buffer.values(_F8, labels, m),
                   buffer.values(_I8, labels + 8 * m, m), buffer.values(_F8, labels + 16 * m, m))

    def to_bytes_list(self) -> list[bytes]:
        """``TerminalHistory.to_bytes()`` of every entity, in order."""
        n, m = np.diff(self.starts), np.diff(self.fraud_starts)
        starts = _offsets(_TERMINAL_HEADER_BYTES + 16 * n + 24 * m)
        out = _Writer(int(starts[-1]))
        words = starts[:-1] // 4
        out.u32[words] = _MAGIC_U32[_TERMINAL_MAGIC]
        out.u32[words + 1] = n
        out.u32[words + 2] = m
        first = starts[:-1] + _TERMINAL_HEADER_BYTES
        out.put(self.timestamp, first, n)
        out.put(self.transaction_id, first + 8 * n, n)
        labels = first + 16 * n
        out.put(self.fraud_timestamp, labels, m)
        out.put(self.fraud_transaction_id, labels + 8 * m, m)
        out.put(self.fraud_known_at, labels + 16 * m, m)
        return out.split(starts)
