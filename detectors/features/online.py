"""Incremental execution of the feature definition for the stream: per-entity state and the per-event update.

The state of one customer (:class:`CustomerHistory`) and of one terminal (:class:`TerminalHistory`) is a few
sorted Python lists, searched with ``bisect``; both serialise to a compact little-endian binary layout
(``to_bytes`` / ``from_bytes``) so that the stream can keep them in a key-value store.  The values equal those of
``batch.compute_features`` for the same events and labels (see ``definition.FEATURE_DOCS``).
"""

from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right
from typing import Callable, MutableMapping, Sequence, TypeVar

import numpy as np

from fraudstream.detectors.features.calendar import night_flags, weekend_flags
from fraudstream.detectors.features.definition import (
    AMOUNT_RATIO_MIN_MEAN,
    DAY_S,
    DEFAULT_CONFIG,
    OWN_FEATURES,
    FeatureConfig,
)
from fraudstream.detectors.schema import LabelEvent, TransactionBatch

#: Window of CUSTOMER_NB_TERMINALS_1DAY_WINDOW (s).
DISTINCT_TERMINALS_WINDOW_S = DAY_S
#: State is kept this much (s) beyond the retention of the config behind the entity's newest transaction, so that
#: events arriving a little late (other partitions, other workers) or delivered again still see complete windows.
STATE_TRIM_SLACK_S = DAY_S

_ITEM_BYTES = 8  # every stored value is a little-endian float64 ("d") or int64 ("q")
_CUSTOMER_HEADER = struct.Struct("<4sI")  # magic, number of transactions
_CUSTOMER_MAGIC = b"FSC1"
_TERMINAL_HEADER = struct.Struct("<4sII")  # magic, number of transactions, number of fraud labels
_TERMINAL_MAGIC = b"FST1"


def _key_position(timestamps: list[float], transaction_ids: list[int], timestamp: float, transaction_id: int) -> int:
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
        """Insert a transaction at ``position`` (its place in (timestamp, id) order, see ``_key_position``)."""
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
        position = _key_position(self.timestamps, self.transaction_ids, timestamp, transaction_id)
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
            position = _key_position(self.fraud_timestamps, self.fraud_transaction_ids, tx_timestamp, transaction_id)
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


_History = TypeVar("_History", CustomerHistory, TerminalHistory)


def _get_or_create(states: MutableMapping[int, _History], key: int, factory: Callable[[], _History]) -> _History:
    state = states.get(key)
    if state is None:
        state = factory()
        states[key] = state
    return state


def _check_batch(batch: TransactionBatch) -> None:
    """Raise ``ValueError`` naming the field and transaction of the first value the features cannot use."""
    for field in ("transaction_id", "customer_id", "terminal_id", "amount"):
        if getattr(batch, field).shape != batch.timestamp.shape:
            raise ValueError(f"TransactionBatch.{field}: {getattr(batch, field).shape[0]} values for "
                             f"{batch.timestamp.shape[0]} timestamps")
    for field in ("timestamp", "amount"):
        bad = ~np.isfinite(getattr(batch, field))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"TransactionBatch.{field}: not a finite number at row {row} "
                             f"(transaction {batch.transaction_id[row]})")


class IncrementalFeatures:
    """Computes the feature rows of a stream of micro-batches from per-customer and per-terminal state.

    Events of one customer must arrive in (timestamp, transaction id) order.  An event that arrives late anyway
    gets its features from the transactions before it and is inserted at its place; features already returned
    for later events are not revised.  A transaction whose id is already in its customer's history (a
    redelivery) is not added again: its features are computed from the transactions before it, the stored copy
    excluded, which gives the values it got the first time as long as no late event came in between.

    Parameters
    ----------
    config : windows and thresholds; must be the configuration the model was trained with.
    """

    def __init__(self, config: FeatureConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self.feature_names = config.feature_names()
        self._customer_windows_s = [days * DAY_S for days in config.customer_windows_days]
        self._terminal_windows_s = [days * DAY_S for days in config.terminal_windows_days]
        self._history_s = config.history_days * DAY_S
        self._label_delay_s = config.label_delay_s
        self._customer_retention_s = config.customer_retention_s + STATE_TRIM_SLACK_S
        self._terminal_retention_s = config.terminal_retention_s + STATE_TRIM_SLACK_S
        layout = ["TX_AMOUNT", "TX_DURING_WEEKEND", "TX_DURING_NIGHT"]
        for days in config.customer_windows_days:
            layout += [f"CUSTOMER_ID_NB_TX_{days}DAY_WINDOW", f"CUSTOMER_ID_AVG_AMOUNT_{days}DAY_WINDOW"]
        for days in config.terminal_windows_days:
            layout += [f"TERMINAL_ID_NB_TX_{days}DAY_WINDOW", f"TERMINAL_ID_RISK_{days}DAY_WINDOW"]
        layout += OWN_FEATURES
        if layout != self.feature_names:
            raise ValueError(f"feature layout {layout} differs from the definition {self.feature_names}")

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def transform(self, batch: TransactionBatch, customers: MutableMapping[int, CustomerHistory],
                  terminals: MutableMapping[int, TerminalHistory]) -> np.ndarray:
        """Features of every event of ``batch`` (rows in batch order), updating the state event by event.

        Each event's features use the state as it is before the event (plus the event itself where the
        definition includes it); then the event is added to its customer's and terminal's history.  Entities
        missing from the mappings are new: their state is created and stored in the mapping.

        Returns
        -------
        float64 array of shape ``(len(batch), n_features)``.
        """
        n = len(batch)
        _check_batch(batch)
        out = np.empty((n, self.n_features), dtype=np.float64)
        if n == 0:
            return out
        out[:, 0] = batch.amount
        out[:, 1] = weekend_flags(batch.timestamp)
        out[:, 2] = night_flags(batch.timestamp, self.config.night_end_hour)
        rows = []
        for timestamp, transaction_id, customer_id, terminal_id, amount in zip(
                batch.timestamp.tolist(), batch.transaction_id.tolist(), batch.customer_id.tolist(),
                batch.terminal_id.tolist(), batch.amount.tolist()):
            customer = _get_or_create(customers, customer_id, CustomerHistory)
            terminal = _get_or_create(terminals, terminal_id, TerminalHistory)
            position = _key_position(customer.timestamps, customer.transaction_ids, timestamp, transaction_id)
            customer_windows, own = self._customer_features(customer, position, timestamp, amount, terminal_id)
            rows.append(customer_windows + self._terminal_features(terminal, timestamp, transaction_id) + own)
            if transaction_id not in customer.transaction_ids:
                customer.insert(position, timestamp, transaction_id, amount, terminal_id)
                customer.trim(customer.timestamps[-1] - self._customer_retention_s)
                terminal.insert(timestamp, transaction_id)
                terminal.trim(terminal.timestamps[-1] - self._terminal_retention_s)
        out[:, 3:] = rows
        return out

    def learn_labels(self, labels: Sequence[LabelEvent], terminals: MutableMapping[int, TerminalHistory]) -> None:
        """Record labels in their terminals' histories (a later label of a transaction replaces the earlier).

        A label counts in terminal risk for transactions at or after its ``known_at`` whose window holds the
        labelled transaction's time.  Labels of transactions older than the terminal's retention are dropped,
        since no window can reach them.
        """
        for label in labels:
            terminal = _get_or_create(terminals, label.terminal_id, TerminalHistory)
            terminal.set_label(label.transaction_id, label.tx_timestamp, label.fraud, label.known_at)
            if terminal.timestamps:
                terminal.trim(terminal.timestamps[-1] - self._terminal_retention_s)

    def _customer_features(self, customer: CustomerHistory, position: int, timestamp: float, amount: float,
                           terminal_id: int) -> tuple[list[float], list[float]]:
        """Customer window features and the own features, from the ``position`` transactions before the event."""
        timestamps, amounts, terminal_ids = customer.timestamps, customer.amounts, customer.terminal_ids
        windows: list[float] = []
        for window_s in self._customer_windows_s:
            start = bisect_right(timestamps, timestamp - window_s, 0, position)
            count = position - start + 1
            windows.append(count)
            windows.append((sum(amounts[start:position]) + amount) / count)

        history_s = self._history_s
        start = bisect_right(timestamps, timestamp - history_s, 0, position)
        stop = bisect_left(timestamps, timestamp, start, position)  # strictly earlier times only
        if stop > start:
            mean = sum(amounts[start:stop]) / (stop - start)
            ratio = amount / max(mean, AMOUNT_RATIO_MIN_MEAN)
            is_new = 0.0 if terminal_id in terminal_ids[start:stop] else 1.0
        else:
            ratio, is_new = 1.0, 1.0
        if position and timestamps[position - 1] > timestamp - history_s:
            since_last = timestamp - timestamps[position - 1]
        else:
            since_last = history_s
        burst = position - bisect_right(timestamps, timestamp - self.config.burst_window_s, 0, position) + 1
        day_start = bisect_right(timestamps, timestamp - DISTINCT_TERMINALS_WINDOW_S, 0, position)
        distinct = set(terminal_ids[day_start:position])
        distinct.add(terminal_id)
        return windows, [ratio, is_new, since_last, burst, len(distinct)]

    def _terminal_features(self, terminal: TerminalHistory, timestamp: float, transaction_id: int) -> list[float]:
        """Terminal count and risk per window: transactions in ``(t - d - w, t - d]``, frauds known at ``t``."""
        window_end = timestamp - self._label_delay_s
        includes_self = window_end >= timestamp  # only when the label delay is 0
        timestamps, transaction_ids = terminal.timestamps, terminal.transaction_ids
        fraud_timestamps, fraud_ids, known_at = (terminal.fraud_timestamps, terminal.fraud_transaction_ids,
                                                 terminal.fraud_known_at)
        stop = bisect_right(timestamps, window_end)
        fraud_stop = bisect_right(fraud_timestamps, window_end)
        if includes_self:  # ties at t: only transactions up to this one in (timestamp, id) order
            while stop and timestamps[stop - 1] == timestamp and transaction_ids[stop - 1] >= transaction_id:
                stop -= 1
            while fraud_stop and fraud_timestamps[fraud_stop - 1] == timestamp and \
                    fraud_ids[fraud_stop - 1] > transaction_id:
                fraud_stop -= 1
        all_known = terminal.max_known_at <= timestamp
        features: list[float] = []
        for window_s in self._terminal_windows_s:
            window_start = window_end - window_s
            count = stop - bisect_right(timestamps, window_start, 0, stop) + includes_self
            if not fraud_stop:  # no fraud label at or before the window end (most terminals)
                frauds = 0
            elif all_known:
                frauds = fraud_stop - bisect_right(fraud_timestamps, window_start, 0, fraud_stop)
            else:
                fraud_start = bisect_right(fraud_timestamps, window_start, 0, fraud_stop)
                frauds = sum(1 for k in range(fraud_start, fraud_stop) if known_at[k] <= timestamp)
            features.append(count)
            features.append(frauds / count if count else 0.0)
        return features
