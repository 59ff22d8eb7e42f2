"""Transaction and label records: file columns, wire format, validation.

Files use the column names of the public "Fraud Detection Handbook" simulated data set, so that data in that
format trains and replays without conversion.  On the wire (Kafka) events are JSON objects with lower-case keys.
Times are epoch seconds (float, UTC) everywhere inside fraudstream.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

# ---- file columns (handbook names) -------------------------------------------------------------------------
TRANSACTION_ID = "TRANSACTION_ID"
TX_DATETIME = "TX_DATETIME"
CUSTOMER_ID = "CUSTOMER_ID"
TERMINAL_ID = "TERMINAL_ID"
TX_AMOUNT = "TX_AMOUNT"
TX_TIME_SECONDS = "TX_TIME_SECONDS"
TX_TIME_DAYS = "TX_TIME_DAYS"
TX_FRAUD = "TX_FRAUD"
TX_FRAUD_SCENARIO = "TX_FRAUD_SCENARIO"
#: Optional: the account a card (``CUSTOMER_ID``) belongs to; the customer features read the account's history.
ACCOUNT_ID = "ACCOUNT_ID"

REQUIRED_COLUMNS: tuple[str, ...] = (TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT)
OPTIONAL_COLUMNS: tuple[str, ...] = (TX_TIME_SECONDS, TX_TIME_DAYS, TX_FRAUD, TX_FRAUD_SCENARIO)
ALL_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS[:2] + (CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT) + OPTIONAL_COLUMNS
#: Optional columns of our own, after the handbook's: read, checked and kept when a file has them.
EXTRA_COLUMNS: tuple[str, ...] = (ACCOUNT_ID,)

#: Upper bound accepted for one amount (currency units); larger values are treated as data errors.
MAX_AMOUNT = 1e9


@dataclass(frozen=True, slots=True)
class EventTimeRange:
    """Sane range of event times (epoch s, UTC): ``earliest <= t < latest``; anything else is an invalid event.

    The default, 2000-01-01 to 2100-01-01, rejects typing errors such as year 9999, epoch 0 or milliseconds
    given as seconds; the stream's own future and lateness rules apply within it.
    """

    earliest_s: float = 946_684_800.0  # 2000-01-01T00:00:00Z
    latest_s: float = 4_102_444_800.0  # 2100-01-01T00:00:00Z

    def __post_init__(self) -> None:
        if not (math.isfinite(self.earliest_s) and math.isfinite(self.latest_s) and self.earliest_s < self.latest_s):
            raise ValueError(f"event time range: expected finite earliest < latest, got "
                             f"[{self.earliest_s!r}, {self.latest_s!r})")

    def check(self, ts: float, field: str, value: Any = None) -> float:
        """``ts`` when in range, else :class:`InvalidEvent` naming ``field``."""
        if not self.earliest_s <= ts < self.latest_s:
            shown = ts if value is None else value
            raise InvalidEvent(f"time {shown!r} outside the accepted range [{_iso_utc(self.earliest_s)}, "
                               f"{_iso_utc(self.latest_s)})", field)
        return ts


def _iso_utc(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: The range used when none is given.
DEFAULT_EVENT_TIME_RANGE = EventTimeRange()


class InvalidEvent(ValueError):
    """A transaction or label that cannot be accepted, with the offending field and the reason."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


def parse_timestamp(value: Any, field: str = "timestamp") -> float:
    """Return epoch seconds (UTC) from a number of seconds or an ISO-8601 string."""
    if isinstance(value, bool):
        raise InvalidEvent(f"expected epoch seconds or ISO-8601 time, got {value!r}", field)
    if isinstance(value, (int, float)):
        ts = float(value)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidEvent(f"not an ISO-8601 time: {value!r}", field) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ts = dt.timestamp()
    else:
        raise InvalidEvent(f"expected epoch seconds or ISO-8601 time, got {type(value).__name__}", field)
    if not math.isfinite(ts) or ts < 0:
        raise InvalidEvent(f"time out of range: {value!r}", field)
    return ts


def parse_event_time(value: Any, field: str = "timestamp",
                     time_range: EventTimeRange = DEFAULT_EVENT_TIME_RANGE) -> float:
    """:func:`parse_timestamp`, then checked against the sane range of event times."""
    return time_range.check(parse_timestamp(value, field), field, value)


#: Ids are 0 <= id < ID_END (a signed 64-bit integer).
ID_END = 2**63


def _int_field(data: Mapping[str, Any], field: str) -> int:
    if field not in data:
        raise InvalidEvent("missing", field)
    value = data[field]
    if isinstance(value, bool):
        raise InvalidEvent(f"expected an integer id, got {value!r}", field)
    if isinstance(value, int):
        out = value
    elif isinstance(value, float) and value.is_integer():
        out = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        out = int(value.strip())
    else:
        raise InvalidEvent(f"expected an integer id, got {value!r}", field)
    if out < 0 or out >= ID_END:
        raise InvalidEvent(f"id out of range: {out}", field)
    return out


def _amount_field(data: Mapping[str, Any], field: str = "amount") -> float:
    if field not in data:
        raise InvalidEvent("missing", field)
    value = data[field]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidEvent(f"expected a number, got {value!r}", field)
    try:
        amount = float(value)
    except ValueError:
        raise InvalidEvent(f"expected a number, got {value!r}", field) from None
    if not math.isfinite(amount) or amount < 0 or amount > MAX_AMOUNT:
        raise InvalidEvent(f"amount out of range [0, {MAX_AMOUNT:g}]: {value!r}", field)
    return amount


def _decode_object(raw: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(raw, (bytes, bytearray, str)):  # cheaper than an ABC check on the hot path
        if isinstance(raw, Mapping):
            return raw
        raise InvalidEvent(f"expected JSON bytes or a mapping, got {type(raw).__name__}")
    try:
        data = orjson.loads(raw)  # ~3x faster than json.loads on small events; same errors (JSONDecodeError)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(data).__name__}")
    return data


@dataclass(frozen=True, slots=True)
class Transaction:
    """One card transaction as it travels on the ``transactions`` topic.

    Wire keys: ``transaction_id``, ``timestamp`` (epoch seconds or ISO-8601), ``customer_id`` (the card: the
    block list and the review cases go by it), ``terminal_id``, ``amount`` (currency units), and optionally
    ``account_id``: the account whose history the card's features read.  A card reissued after a fraud gets a new
    ``customer_id`` but keeps its account, so its features go on from the account's history instead of starting
    empty (a fresh history makes every later transaction look new); without it the account is the card.  Events
    of one account must share a partition (key them by account).  Unknown keys are ignored, so producers may add
    fields.
    """

    transaction_id: int
    timestamp: float
    customer_id: int
    terminal_id: int
    amount: float
    account_id: int | None = None

    @property
    def account(self) -> int:
        """Key of the history the features read: ``account_id``, or the card when the event names none."""
        return self.customer_id if self.account_id is None else self.account_id

    @classmethod
    def from_dict(cls, data: Mapping[str, Any],
                  time_range: EventTimeRange = DEFAULT_EVENT_TIME_RANGE) -> Transaction:
        """Validate one event; the sane range of ``timestamp`` is checked after every field's format."""
        tid, cid, term = data.get("transaction_id"), data.get("customer_id"), data.get("terminal_id")
        ts, amount = data.get("timestamp"), data.get("amount")
        # the usual event (as the worker's consumer hands it over: timestamp already epoch s) in one test; any
        # other (other types, out of range, an account) goes through the field checks below, which name the field
        if (type(tid) is int and type(cid) is int and type(term) is int and type(ts) is float
                and type(amount) is float and data.get("account_id") is None
                and 0 <= tid < ID_END and 0 <= cid < ID_END and 0 <= term < ID_END
                and time_range.earliest_s <= ts < time_range.latest_s and 0.0 <= amount <= MAX_AMOUNT):
            if cls is Transaction:
                return _new_transaction(tid, ts, cid, term, amount)
            return cls(tid, ts, cid, term, amount)
        if "timestamp" not in data:
            raise InvalidEvent("missing", "timestamp")
        tx = cls(
            transaction_id=_int_field(data, "transaction_id"),
            timestamp=parse_timestamp(data["timestamp"]),
            customer_id=_int_field(data, "customer_id"),
            terminal_id=_int_field(data, "terminal_id"),
            amount=_amount_field(data),
            account_id=_int_field(data, "account_id") if data.get("account_id") is not None else None,
        )
        time_range.check(tx.timestamp, "timestamp", data["timestamp"])
        return tx

    @classmethod
    def from_json(cls, raw: bytes | str | Mapping[str, Any],
                  time_range: EventTimeRange = DEFAULT_EVENT_TIME_RANGE) -> Transaction:
        """Parse and validate one wire event; raises :class:`InvalidEvent` with the field at fault."""
        return cls.from_dict(_decode_object(raw), time_range)

    def to_dict(self) -> dict[str, Any]:
        out = {"transaction_id": self.transaction_id, "timestamp": self.timestamp, "customer_id": self.customer_id,
               "terminal_id": self.terminal_id, "amount": self.amount}
        if self.account_id is not None:
            out["account_id"] = self.account_id
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()


#: Setters of a Transaction's slots, in field order (see :func:`_new_transaction`).
_TRANSACTION_SLOTS = tuple(getattr(Transaction, name).__set__ for name in
                           ("transaction_id", "timestamp", "customer_id", "terminal_id", "amount", "account_id"))


def _new_transaction(transaction_id: int, timestamp: float, customer_id: int, terminal_id: int,
                     amount: float) -> Transaction:
    """``Transaction(transaction_id, timestamp, customer_id, terminal_id, amount)`` for values already checked, in
    about half the time: the slots are set directly instead of through the frozen dataclass's ``__init__``
    (``object.__setattr__`` a field).  One is made per transaction consumed."""
    tx = object.__new__(Transaction)
    set_id, set_time, set_customer, set_terminal, set_amount, set_account = _TRANSACTION_SLOTS
    set_id(tx, transaction_id)
    set_time(tx, timestamp)
    set_customer(tx, customer_id)
    set_terminal(tx, terminal_id)
    set_amount(tx, amount)
    set_account(tx, None)
    return tx


@dataclass(frozen=True, slots=True)
class LabelEvent:
    """A fraud/legit label for one transaction, on the ``labels`` topic.

    ``known_at`` (epoch seconds, event time) is when the label becomes known: features count it only for
    transactions at or after that time.  ``source`` says who labelled it (``chargeback``, ``analyst``, ...).
    """

    transaction_id: int
    terminal_id: int
    customer_id: int
    tx_timestamp: float
    fraud: bool
    known_at: float
    source: str = "chargeback"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any],
                  time_range: EventTimeRange = DEFAULT_EVENT_TIME_RANGE) -> LabelEvent:
        for field in ("tx_timestamp", "fraud", "known_at"):
            if field not in data:
                raise InvalidEvent("missing", field)
        fraud = data["fraud"]
        if fraud in (0, 1, True, False) and not isinstance(fraud, float):
            fraud_flag = bool(fraud)
        else:
            raise InvalidEvent(f"expected true/false or 0/1, got {fraud!r}", "fraud")
        source = data.get("source", "chargeback")
        if not isinstance(source, str) or not source:
            raise InvalidEvent(f"expected a non-empty string, got {source!r}", "source")
        label = cls(
            transaction_id=_int_field(data, "transaction_id"),
            terminal_id=_int_field(data, "terminal_id"),
            customer_id=_int_field(data, "customer_id"),
            tx_timestamp=parse_timestamp(data["tx_timestamp"], "tx_timestamp"),
            fraud=fraud_flag,
            known_at=parse_timestamp(data["known_at"], "known_at"),
            source=source,
        )
        time_range.check(label.tx_timestamp, "tx_timestamp", data["tx_timestamp"])
        time_range.check(label.known_at, "known_at", data["known_at"])
        return label

    @classmethod
    def from_json(cls, raw: bytes | str | Mapping[str, Any],
                  time_range: EventTimeRange = DEFAULT_EVENT_TIME_RANGE) -> LabelEvent:
        return cls.from_dict(_decode_object(raw), time_range)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()


@dataclass(frozen=True)
class TransactionBatch:
    """A micro-batch of transactions as parallel arrays (struct of arrays), in arrival order.

    ``customer_id`` is the card (block lists go by it); ``account_id`` keys the histories of the customer features
    (:attr:`account`; None: the card's own, as in files, whose ``CUSTOMER_ID`` is both).
    """

    transaction_id: np.ndarray  # int64
    timestamp: np.ndarray  # float64, epoch seconds
    customer_id: np.ndarray  # int64
    terminal_id: np.ndarray  # int64
    amount: np.ndarray  # float64
    account_id: np.ndarray | None = None  # int64

    def __len__(self) -> int:
        return int(self.transaction_id.shape[0])

    @property
    def account(self) -> np.ndarray:
        """Key of each row's customer history (int64): its account, or its card when none is named."""
        return self.customer_id if self.account_id is None else self.account_id

    @classmethod
    def from_transactions(cls, txs: Iterable[Transaction]) -> TransactionBatch:
        txs = list(txs)
        named = any(t.account_id is not None for t in txs)
        return cls(
            transaction_id=np.fromiter((t.transaction_id for t in txs), dtype=np.int64, count=len(txs)),
            timestamp=np.fromiter((t.timestamp for t in txs), dtype=np.float64, count=len(txs)),
            customer_id=np.fromiter((t.customer_id for t in txs), dtype=np.int64, count=len(txs)),
            terminal_id=np.fromiter((t.terminal_id for t in txs), dtype=np.int64, count=len(txs)),
            amount=np.fromiter((t.amount for t in txs), dtype=np.float64, count=len(txs)),
            account_id=np.fromiter((t.account for t in txs), dtype=np.int64, count=len(txs)) if named else None,
        )

    @classmethod
    def from_frame(cls, frame: Any) -> TransactionBatch:
        """Build from a data frame in handbook columns (``TX_DATETIME`` as datetime64; ``ACCOUNT_ID`` optional)."""
        return cls(
            transaction_id=frame[TRANSACTION_ID].to_numpy(dtype=np.int64),
            timestamp=datetime_to_epoch_seconds(frame[TX_DATETIME]),
            customer_id=frame[CUSTOMER_ID].to_numpy(dtype=np.int64),
            terminal_id=frame[TERMINAL_ID].to_numpy(dtype=np.int64),
            amount=frame[TX_AMOUNT].to_numpy(dtype=np.float64),
            account_id=frame[ACCOUNT_ID].to_numpy(dtype=np.int64) if ACCOUNT_ID in frame.columns else None,
        )

    @classmethod
    def concat(cls, parts: Sequence[TransactionBatch]) -> TransactionBatch:
        """The parts' rows one after the other (``account_id`` is kept when a part names accounts)."""
        named = any(p.account_id is not None for p in parts)
        return cls(
            transaction_id=np.concatenate([p.transaction_id for p in parts]),
            timestamp=np.concatenate([p.timestamp for p in parts]),
            customer_id=np.concatenate([p.customer_id for p in parts]),
            terminal_id=np.concatenate([p.terminal_id for p in parts]),
            amount=np.concatenate([p.amount for p in parts]),
            account_id=np.concatenate([p.account for p in parts]) if named else None,
        )

    def take(self, index: np.ndarray) -> TransactionBatch:
        return TransactionBatch(
            self.transaction_id[index], self.timestamp[index], self.customer_id[index],
            self.terminal_id[index], self.amount[index],
            None if self.account_id is None else self.account_id[index],
        )


def datetime_to_epoch_seconds(values: Any) -> np.ndarray:
    """Epoch seconds (float64, UTC) from a pandas datetime Series/Index (naive values are taken as UTC)."""
    import pandas as pd  # local: keeps the wire path free of pandas import cost

    ts = pd.to_datetime(values)
    if getattr(ts.dt if hasattr(ts, "dt") else ts, "tz", None) is not None:
        if hasattr(ts, "dt"):
            ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
        else:
            ts = ts.tz_convert("UTC").tz_localize(None)
    arr = np.asarray(ts, dtype="datetime64[ns]")
    return arr.astype("int64").astype(np.float64) / 1e9
