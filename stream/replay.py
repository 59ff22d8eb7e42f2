"""Replay a transaction file to Kafka in event-time order, optionally with a delayed label feed.

Two halves: a pure *plan* (:func:`plan_replay`: which event is sent when, as arrays) and the sender
(:func:`replay`: a kafka-python producer that follows the plan).  Pacing is one of

* a fixed rate (tx/s): transaction ``i`` is sent ``i / rate`` s after the start;
* an event-time speedup: an event at event time ``t`` is sent ``(t - t_first) / speedup`` s after the start
  (``speedup=86400`` replays a day per second);
* neither: as fast as the producer goes.

With a label delay ``d`` the replay also sends a chargeback feed: :class:`LabelEvent` records with
``known_at = t + d`` (source ``chargeback``).  Which transactions get one is the *label feed*:

* ``fraud`` (default): fraud reports only, one per transaction with ``TX_FRAUD == 1``, as a real chargeback feed
  carries them; a transaction without a report counts as legitimate once the delay has passed, which is what the
  features assume anyway (only fraud labels are stored, see ``TerminalHistory``), so the features are the same
  as with the full feed, for a hundredth of the label traffic;
* ``all``: one label per transaction with a known ``TX_FRAUD``, legitimate ones too.

Each label is placed in the stream at event time ``known_at - lead``: it goes out
just before the first transaction at or after that time, so a worker has it before any transaction that may
count it.  Labels whose time falls after the last transaction are sent after it.  Before a transaction at event
time ``t`` is sent, every label sent earlier with ``known_at <= t`` has been acknowledged by the broker (the
producer is flushed when the replay's event time reaches the smallest ``known_at`` sent since the last flush), so
a worker that catches up with the labels topic before scoring sees every label that may count for it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np

from fraudstream.detectors.schema import (
    ACCOUNT_ID,
    CUSTOMER_ID,
    REQUIRED_COLUMNS,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
    LabelEvent,
    Transaction,
    datetime_to_epoch_seconds,
)
from fraudstream.stream.broker.replay_producer import make_producer as make_producer
from fraudstream.stream.broker.replay_producer import send_checked
from fraudstream.stream.settings import StreamSettings

if TYPE_CHECKING:
    import pandas as pd
    from kafka import KafkaProducer
    from tqdm import tqdm

EVENT_TRANSACTION = 0
EVENT_LABEL = 1
#: Default lead (s) of a label over its ``known_at``: one day.
DEFAULT_LABELS_LEAD_S = 86_400.0
LABEL_SOURCE = "chargeback"
#: Label feeds: fraud reports only, or one label per transaction with a known ``TX_FRAUD``.
LABEL_FEED_FRAUD = "fraud"
LABEL_FEED_ALL = "all"
LABEL_FEEDS = (LABEL_FEED_FRAUD, LABEL_FEED_ALL)
DEFAULT_LABEL_FEED = LABEL_FEED_FRAUD

#: Longest wait (s) for outstanding messages at the end.
FLUSH_TIMEOUT_S = 60.0
#: Sleep only when ahead of the plan by more than this (s).
MIN_SLEEP_S = 0.002
#: Progress (bar and callback) is updated every this many events.
PROGRESS_EVERY = 256

#: Wire keys, in constructor order, of the two event types (taken from the schema records; a transaction's optional
#: ``account_id`` is added only when the file has an ``ACCOUNT_ID`` column).
TRANSACTION_KEYS = tuple(f.name for f in fields(Transaction) if f.name != "account_id")
LABEL_KEYS = tuple(f.name for f in fields(LabelEvent))
_encode_json = json.JSONEncoder(separators=(",", ":")).encode

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhms]?)\s*$", re.IGNORECASE)
_UNIT_S = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0, "": 1.0}


class ReplayInputError(ValueError):
    """The frame cannot be replayed; the message names the row and column at fault."""


def parse_duration(text: str) -> float:
    """Seconds from ``7d``, ``12h``, ``30m``, ``45s`` or a plain number of seconds."""
    match = _DURATION_RE.match(str(text))
    if not match:
        raise ValueError(f"not a duration: {text!r} (expected a number with unit d, h, m or s, e.g. 7d)")
    return float(match.group(1)) * _UNIT_S[match.group(2).lower()]


# ---- the plan (pure) -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayPlan:
    """Events in send order, as parallel arrays.

    kind : int8, :data:`EVENT_TRANSACTION` or :data:`EVENT_LABEL`.
    row : int64, position of the transaction (the labelled one, for labels) in the input arrays.
    event_time : float64, epoch s at which the event enters the stream (labels: ``known_at - lead``).
    send_at_s : float64, wall-clock offset (s) from the start of the replay at which it is due.
    """

    kind: np.ndarray
    row: np.ndarray
    event_time: np.ndarray
    send_at_s: np.ndarray

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    @property
    def n_transactions(self) -> int:
        return int(np.count_nonzero(self.kind == EVENT_TRANSACTION))

    @property
    def n_labels(self) -> int:
        return int(np.count_nonzero(self.kind == EVENT_LABEL))


def plan_replay(tx_time: np.ndarray, tx_id: np.ndarray, fraud: np.ndarray | None = None, *,
                rate: float | None = None, speedup: float | None = None, labels_delay_s: float | None = None,
                labels_lead_s: float = DEFAULT_LABELS_LEAD_S, label_feed: str = DEFAULT_LABEL_FEED) -> ReplayPlan:
    """Order and schedule the events of a replay.

    Parameters
    ----------
    tx_time : float64 epoch s of each transaction.
    tx_id : transaction ids; ties in time are broken by id.
    fraud : float, 1/0 per transaction, ``nan`` where unknown (no label is sent); None = no labels.
    rate : fixed pace (tx/s); labels ride along at the time of the next transaction.
    speedup : event-time pace (event s per wall s); exclusive with ``rate``.
    labels_delay_s : delay (s) after a transaction at which its label is known; None = no labels.
    labels_lead_s : how long (s) before ``known_at`` the label is sent, in event time.
    label_feed : :data:`LABEL_FEED_FRAUD` (a label for each fraud only) or :data:`LABEL_FEED_ALL` (for each
        transaction with a known label).
    """
    tx_time = np.asarray(tx_time, dtype=np.float64)
    tx_id = np.asarray(tx_id)
    n = tx_time.shape[0]
    if tx_id.shape[0] != n or (fraud is not None and np.shape(fraud)[0] != n):
        raise ValueError("tx_time, tx_id and fraud must have the same length")
    if not np.all(np.isfinite(tx_time)):
        raise ValueError(f"tx_time has a non-finite value at position {int(np.argmin(np.isfinite(tx_time)))}")
    if rate is not None and speedup is not None:
        raise ValueError("give either a rate or a speedup, not both")
    if rate is not None and not (np.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a positive number of tx/s, got {rate!r}")
    if speedup is not None and not (np.isfinite(speedup) and speedup > 0):
        raise ValueError(f"speedup must be a positive factor, got {speedup!r}")
    if labels_delay_s is not None and not labels_delay_s >= 0:
        raise ValueError(f"labels delay must be >= 0 s, got {labels_delay_s!r}")
    if not labels_lead_s >= 0:
        raise ValueError(f"labels lead must be >= 0 s, got {labels_lead_s!r}")
    if label_feed not in LABEL_FEEDS:
        raise ValueError(f"label feed: expected one of {LABEL_FEEDS}, got {label_feed!r}")

    kinds = [np.full(n, EVENT_TRANSACTION, dtype=np.int8)]
    rows = [np.arange(n, dtype=np.int64)]
    times = [tx_time]
    if fraud is not None and labels_delay_s is not None:
        fraud = np.asarray(fraud, dtype=np.float64)
        known = ~np.isnan(fraud)
        bad = known & (fraud != 0) & (fraud != 1)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise ValueError(f"fraud label at position {pos} is {fraud[pos]!r}; expected 0, 1 or missing")
        labelled = np.flatnonzero(known if label_feed == LABEL_FEED_ALL else fraud == 1)
        kinds.append(np.full(labelled.shape[0], EVENT_LABEL, dtype=np.int8))
        rows.append(labelled.astype(np.int64))
        times.append(tx_time[labelled] + labels_delay_s - labels_lead_s)
    kind = np.concatenate(kinds)
    row = np.concatenate(rows)
    event_time = np.concatenate(times)
    # event time first; at equal times labels go before transactions; then by transaction (time, id)
    order = np.lexsort((tx_id[row], tx_time[row], kind != EVENT_LABEL, event_time))
    kind, row, event_time = kind[order], row[order], event_time[order]
    return ReplayPlan(kind, row, event_time, _schedule(kind, event_time, rate, speedup))


def _schedule(kind: np.ndarray, event_time: np.ndarray, rate: float | None, speedup: float | None) -> np.ndarray:
    """Wall-clock offsets (s) of events already in send order."""
    is_tx = kind == EVENT_TRANSACTION
    if rate is not None:
        tx_before = np.cumsum(is_tx) - is_tx  # transactions sent before this event
        return np.asarray(tx_before.astype(np.float64) / rate)
    if speedup is not None and is_tx.any():
        first, last = event_time[is_tx][0], event_time[is_tx][-1]
        return np.asarray((np.clip(event_time, first, last) - first) / speedup)
    return np.zeros(kind.shape[0], dtype=np.float64)


# ---- the input frame -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayColumns:
    """The frame's columns as arrays: ids (int64), time (epoch s), amount, fraud (nan = unknown, or None)."""

    transaction_id: np.ndarray
    timestamp: np.ndarray
    customer_id: np.ndarray
    terminal_id: np.ndarray
    amount: np.ndarray
    fraud: np.ndarray | None
    account_id: np.ndarray | None = None  # the file's ACCOUNT_ID (None: no such column)


def columns_from_frame(frame: pd.DataFrame) -> ReplayColumns:
    """Validate a frame in handbook columns and return its arrays; raises :class:`ReplayInputError`."""
    import pandas as pd

    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ReplayInputError(f"missing columns {missing}; have {list(frame.columns)}")

    def fail(mask: np.ndarray, column: str, reason: str) -> None:
        if mask.any():
            pos = int(np.flatnonzero(mask)[0])
            raise ReplayInputError(f"row {frame.index[pos]!r}, column {column}: {reason} "
                                   f"(value {frame[column].iloc[pos]!r}; {int(mask.sum())} such rows)")

    times = pd.to_datetime(frame[TX_DATETIME], errors="coerce")
    fail(times.isna().to_numpy(), TX_DATETIME, "not a date-time")
    ids = {}
    for column in (TRANSACTION_ID, CUSTOMER_ID, TERMINAL_ID, *([ACCOUNT_ID] if ACCOUNT_ID in frame.columns else [])):
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        fail(~np.isfinite(values) | (values < 0) | (values != np.floor(values)), column,
             "not a non-negative integer id")
        ids[column] = values.astype(np.int64)
    amount = pd.to_numeric(frame[TX_AMOUNT], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    fail(~np.isfinite(amount) | (amount < 0), TX_AMOUNT, "not a non-negative amount")
    fraud = None
    if TX_FRAUD in frame.columns:
        fraud = pd.to_numeric(frame[TX_FRAUD], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        present = frame[TX_FRAUD].notna().to_numpy()
        fail(present & (np.isnan(fraud) | ((fraud != 0) & (fraud != 1))), TX_FRAUD, "not 0, 1 or empty")
    return ReplayColumns(ids[TRANSACTION_ID], datetime_to_epoch_seconds(times), ids[CUSTOMER_ID],
                         ids[TERMINAL_ID], amount, fraud, ids.get(ACCOUNT_ID))


def select_window(frame: pd.DataFrame, start: float | None = None, end: float | None = None,
                  limit: int | None = None) -> pd.DataFrame:
    """Rows with ``start <= time < end`` (epoch s, either may be None), the ``limit`` earliest in event time."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if start is None and end is None and limit is None:
        return frame
    times = datetime_to_epoch_seconds(frame[TX_DATETIME])
    keep = np.ones(len(frame), dtype=bool)
    if start is not None:
        keep &= times >= start
    if end is not None:
        keep &= times < end
    positions = np.flatnonzero(keep)
    if limit is not None:
        ids = frame[TRANSACTION_ID].to_numpy()[positions]
        positions = positions[np.lexsort((ids, times[positions]))][:limit]
        positions.sort()
    return frame.iloc[positions]


# ---- the sender ------------------------------------------------------------------------------------------------
@dataclass
class ReplaySummary:
    """What a replay did: counts, wall time (s), transaction rate (tx/s), delivery errors."""

    sent: int = 0
    labels_sent: int = 0
    elapsed_s: float = 0.0
    errors: int = 0
    first_error: str = ""
    interrupted: bool = False
    planned: int = 0
    labels_planned: int = 0
    topics: tuple[str, str] = field(default=("", ""))

    @property
    def tx_per_s(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def format(self) -> str:
        text = (f"replay {'interrupted' if self.interrupted else 'done'}: sent {self.sent}/{self.planned} "
                f"transactions to {self.topics[0]}, {self.labels_sent}/{self.labels_planned} labels to "
                f"{self.topics[1]} in {self.elapsed_s:.1f} s ({self.tx_per_s:,.0f} tx/s), {self.errors} errors")
        return text + (f"; first error: {self.first_error}" if self.first_error else "")


class _DeliveryErrors:
    def __init__(self) -> None:
        self.count = 0
        self.first = ""
        self._lock = threading.Lock()

    def __call__(self, exc: BaseException) -> None:
        with self._lock:
            self.count += 1
            if not self.first:
                self.first = repr(exc)


def replay(frame: pd.DataFrame, settings: StreamSettings, rate: float | None = None, speedup: float | None = None,
           labels_delay_s: float | None = None, labels_lead_s: float = DEFAULT_LABELS_LEAD_S,
           progress: bool = True, *, label_feed: str = DEFAULT_LABEL_FEED, stop: threading.Event | None = None,
           on_progress: Callable[[int, int], None] | None = None,
           producer: KafkaProducer | None = None) -> ReplaySummary:
    """Send the frame's transactions (and labels) to Kafka following :func:`plan_replay`.

    Transactions go to ``settings.transactions_topic`` keyed by customer id, labels to ``settings.labels_topic``
    keyed by terminal id; ``label_feed`` chooses which transactions get a label (see :func:`plan_replay`).
    Setting ``stop`` ends the replay early (the summary says so); ``on_progress(sent,
    labels_sent)`` is called every few hundred events.  Everything sent is flushed before returning.
    ``producer`` (a kafka-python producer) is used and left open when given; otherwise one is made and closed.
    A topic that vanishes from the broker meanwhile raises ``TopicVanishedError`` (a ``KafkaError``).
    """
    cols = columns_from_frame(frame)
    plan = plan_replay(cols.timestamp, cols.transaction_id, cols.fraud, rate=rate, speedup=speedup,
                       labels_delay_s=labels_delay_s, labels_lead_s=labels_lead_s, label_feed=label_feed)
    tx_topic, label_topic = settings.transactions_topic, settings.labels_topic
    summary = ReplaySummary(planned=plan.n_transactions, labels_planned=plan.n_labels, topics=(tx_topic, label_topic))
    own_producer = producer is None
    if producer is None:
        producer = make_producer(settings.kafka_bootstrap_servers)
    errors = _DeliveryErrors()
    tx_ids, times = cols.transaction_id.tolist(), cols.timestamp.tolist()
    customers, terminals, amounts = cols.customer_id.tolist(), cols.terminal_id.tolist(), cols.amount.tolist()
    accounts = cols.account_id.tolist() if cols.account_id is not None else None  # records keyed by account
    fraud = cols.fraud.tolist() if cols.fraud is not None else None
    kinds, rows, due = plan.kind.tolist(), plan.row.tolist(), plan.send_at_s.tolist()
    delay = labels_delay_s or 0.0
    bar = _progress_bar(plan.n_transactions, progress)
    sent = labels = 0
    unflushed_known_at = float("inf")  # smallest known_at among labels sent since the last flush
    start = time.perf_counter()
    try:
        for j in range(len(kinds)):
            ahead = due[j] - (time.perf_counter() - start)
            if ahead > MIN_SLEEP_S:
                if stop is not None:
                    stop.wait(ahead)
                else:
                    time.sleep(ahead)
            if stop is not None and stop.is_set():
                summary.interrupted = True
                break
            i = rows[j]
            if kinds[j] == EVENT_TRANSACTION:
                if times[i] >= unflushed_known_at:
                    producer.flush(timeout=FLUSH_TIMEOUT_S)
                    unflushed_known_at = float("inf")
                wire = dict(zip(TRANSACTION_KEYS, (tx_ids[i], times[i], customers[i], terminals[i], amounts[i])))
                key = customers[i]
                if accounts is not None:
                    wire["account_id"] = key = accounts[i]
                payload = _encode_json(wire).encode()
                future = send_checked(producer, tx_topic, str(key).encode(), payload, sent + labels)
                sent += 1
            else:
                payload = _encode_json(dict(zip(LABEL_KEYS, (
                    tx_ids[i], terminals[i], customers[i], times[i], fraud[i] == 1.0,  # type: ignore[index]
                    times[i] + delay, LABEL_SOURCE)))).encode()
                future = send_checked(producer, label_topic, str(terminals[i]).encode(), payload, sent + labels)
                unflushed_known_at = min(unflushed_known_at, times[i] + delay)
                labels += 1
            future.add_errback(errors)
            if (j + 1) % PROGRESS_EVERY == 0:
                _report(bar, on_progress, sent, labels)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        producer.flush(timeout=FLUSH_TIMEOUT_S)
        if own_producer:
            producer.close(timeout=FLUSH_TIMEOUT_S)
        _report(bar, on_progress, sent, labels)
        if bar is not None:
            bar.close()
    summary.sent, summary.labels_sent = sent, labels
    summary.elapsed_s = time.perf_counter() - start
    summary.errors, summary.first_error = errors.count, errors.first
    return summary


def _progress_bar(total: int, enabled: bool) -> tqdm | None:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="tx", desc="replay", smoothing=0.1)


def _report(bar: tqdm | None, on_progress: Callable[[int, int], None] | None, sent: int, labels: int) -> None:
    if bar is not None:
        bar.update(sent - bar.n)
        bar.set_postfix(labels=labels, refresh=False)
    if on_progress is not None:
        on_progress(sent, labels)
