"""The pure part of rebuilding the worker's state from the topics (``fraudstream state rebuild``).

:class:`StateRebuild` takes the records of the transactions, labels, decisions and dead-letter topics and gives
the state to write (customer and terminal histories, labels-applied offsets, stored decisions) as values, through
the worker's own feature update; no client.  What is rebuilt and why: :mod:`fraudstream.stream.state.rebuild`,
the I/O edge that reads the topics and writes Redis.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson

from fraudstream.detectors.cascade.review_budget import LogEntry, case_logs
from fraudstream.detectors.features.definition import FeatureConfig
from fraudstream.detectors.features.online import STATE_TRIM_SLACK_S, IncrementalFeatures
from fraudstream.detectors.schema import (
    DEFAULT_EVENT_TIME_RANGE,
    EventTimeRange,
    LabelEvent,
    Transaction,
    TransactionBatch,
)
from fraudstream.stream.core.batch import analyst_verdicts
from fraudstream.stream.core.histories import learn_labels_stored, transform_stored
from fraudstream.stream.core.parse import parse_events
from fraudstream.stream.core.plan import same_content
from fraudstream.stream.types import RawEvent


def feature_window_s(config: FeatureConfig) -> float:
    """How far back (s) of the latest event time the features of a later transaction can look: the longest
    retention of the feature configuration (customer or terminal, the label delay included), plus the slack the
    worker's state keeps beyond it for late events (:data:`STATE_TRIM_SLACK_S`)."""
    return max(config.customer_retention_s, config.terminal_retention_s) + STATE_TRIM_SLACK_S


@dataclass
class RebuildCounts:
    """What a rebuild read and did with it."""

    transactions_read: int = 0
    #: transactions replayed into the histories.
    transactions_replayed: int = 0
    #: of those, records past the committed offset that had a decision (decided, not committed).
    decided_past_committed: int = 0
    #: records past the committed offset without a decision: left to the restarted workers.
    left_to_workers: int = 0
    #: records not replayed: invalid, in the dead-letter topic, duplicates and conflicts of an id, outside the window.
    invalid: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    conflicts: int = 0
    outside_window: int = 0
    labels_read: int = 0
    labels_applied: int = 0
    labels_invalid: int = 0
    labels_outside_window: int = 0
    dead_letters_read: int = 0
    decisions_read: int = 0
    decisions_restored: int = 0
    decisions_expired: int = 0
    decisions_unreadable: int = 0


@dataclass
class RebuiltState:
    """The state to write, as values.

    customers, terminals : histories as the store holds them (``to_bytes``).
    label_offsets : label partition -> applied offset (exclusive).
    decisions : (transaction id, decision JSON as produced, seconds left before it expires).
    latest_event_s, window_start_s : latest replayed event time and the start of the replayed window (epoch s;
        None when nothing was replayed).
    first_replayed_s : earliest replayed event time (None: nothing replayed).
    earliest_event_s : earliest transaction event time read (None: none read).
    review_cases : UTC event day -> the review-case log of the restored REVIEW decisions and the analysts'
        verdicts (:func:`~fraudstream.detectors.cascade.review_budget.case_logs`), for a review budget.
    """

    customers: dict[int, bytes]
    terminals: dict[int, bytes]
    label_offsets: dict[int, int]
    decisions: list[tuple[int, bytes, int]]
    counts: RebuildCounts
    latest_event_s: float | None = None
    window_start_s: float | None = None
    first_replayed_s: float | None = None
    earliest_event_s: float | None = None
    review_cases: dict[int, list[LogEntry]] = field(default_factory=dict)


@dataclass
class _Decision:
    raw: bytes
    decided_at: float


class StateRebuild:
    """Collects the records of the topics, then replays them into the state to write (:meth:`build`).

    Parameters
    ----------
    features : the incremental features of the model the workers run (its feature configuration).
    transactions_topic, labels_topic : topic names (dead letters name the topic of their record).
    time_range : sane range of transaction times, as the worker's (outside: invalid, not replayed).
    """

    def __init__(self, features: IncrementalFeatures, transactions_topic: str, labels_topic: str,
                 time_range: EventTimeRange = DEFAULT_EVENT_TIME_RANGE) -> None:
        self.features = features
        self.transactions_topic = transactions_topic
        self.labels_topic = labels_topic
        self.time_range = time_range
        self.counts = RebuildCounts()
        self._transactions: list[tuple[Transaction, int, int]] = []  # (transaction, partition, offset)
        self._labels: dict[int, list[tuple[int, LabelEvent]]] = {}  # partition -> (offset, label)
        self._label_ends: dict[int, int] = {}
        self._dead: set[tuple[int, int]] = set()  # (partition, offset) of dead-lettered transaction records
        self._decisions: dict[int, _Decision] = {}
        self._earliest: float | None = None

    # ---- records in --------------------------------------------------------------------------------------------
    def add_transactions(self, records: Sequence[RawEvent]) -> None:
        """Records of the transactions topic (any order); invalid ones are counted and left out."""
        parsed = parse_events(records, self.transactions_topic, self.labels_topic, self.time_range)
        self.counts.transactions_read += len(records)
        self.counts.invalid += len(parsed.dlq)
        for tx, event in zip(parsed.transactions, parsed.tx_events):
            self._transactions.append((tx, event.partition, event.offset))
            if self._earliest is None or tx.timestamp < self._earliest:
                self._earliest = tx.timestamp

    def add_labels(self, records: Sequence[RawEvent]) -> None:
        """Records of the labels topic, each partition's in offset order."""
        parsed = parse_events(records, self.transactions_topic, self.labels_topic, self.time_range)
        self.counts.labels_read += len(records)
        self.counts.labels_invalid += len(parsed.dlq)
        for label, (partition, offset) in zip(parsed.labels, parsed.label_at):
            self._labels.setdefault(partition, []).append((offset, label))
        for record in records:
            if record.topic == self.labels_topic:
                self._label_ends[record.partition] = max(self._label_ends.get(record.partition, 0),
                                                         record.offset + 1)

    def add_dead_letters(self, records: Iterable[RawEvent]) -> None:
        """Records of the dead-letter topic: the transaction records they name are left out."""
        for record in records:
            self.counts.dead_letters_read += 1
            try:
                letter = orjson.loads(record.value or b"")
                if letter["topic"] == self.transactions_topic:
                    self._dead.add((int(letter["partition"]), int(letter["offset"])))
            except (ValueError, KeyError, TypeError):
                continue

    def add_decisions(self, records: Iterable[RawEvent]) -> None:
        """Records of the decisions topic, each partition's in offset order; the first decision of an id counts."""
        for record in records:
            self.counts.decisions_read += 1
            try:
                decision = orjson.loads(record.value or b"")
                transaction_id, decided_at = int(decision["transaction_id"]), float(decision["decided_at"])
            except (ValueError, KeyError, TypeError):
                self.counts.decisions_unreadable += 1
                continue
            if transaction_id not in self._decisions and record.value is not None:
                self._decisions[transaction_id] = _Decision(record.value, decided_at)

    # ---- state out ---------------------------------------------------------------------------------------------
    def build(self, committed: Mapping[int, int], now_s: float, decision_ttl_s: float, batch_size: int = 2000,
              on_progress: Callable[[int, int], None] | None = None) -> RebuiltState:
        """Replay what was collected into the state to write.

        Parameters
        ----------
        committed : transactions partition -> the consumer group's committed offset (absent: nothing committed).
        now_s : wall time (epoch s) the decisions' remaining expiry is counted from.
        decision_ttl_s : the workers' ``decision_ttl_s``.
        batch_size : transactions per replayed micro-batch.
        on_progress : called with (transactions replayed, to replay) after each micro-batch.
        """
        counts = self.counts
        decisions = self._restorable(now_s, decision_ttl_s)
        kept = self._processed(committed, decisions)
        window_s = feature_window_s(self.features.config)
        latest = max((tx.timestamp for tx in kept), default=None)
        cutoff = -math.inf if latest is None else latest - window_s
        replay = [tx for tx in kept if tx.timestamp > cutoff]
        counts.outside_window = len(kept) - len(replay)
        replay.sort(key=lambda tx: (tx.timestamp, tx.transaction_id))
        labels = self._label_queues(cutoff)
        customers: dict[int, bytes] = {}
        terminals: dict[int, bytes] = {}
        step = max(1, int(batch_size))
        for start in range(0, len(replay), step):
            chunk = replay[start:start + step]
            due = [label for queue in labels for label in queue.due(chunk[-1].timestamp)]
            if due:
                learn_labels_stored(self.features, due, terminals)
                counts.labels_applied += len(due)
            transform_stored(self.features, TransactionBatch.from_transactions(chunk), customers, terminals)
            counts.transactions_replayed += len(chunk)
            if on_progress is not None:
                on_progress(counts.transactions_replayed, len(replay))
        rest = [label for queue in labels for label in queue.rest()]
        if rest:
            learn_labels_stored(self.features, rest, terminals)
            counts.labels_applied += len(rest)
        return RebuiltState(customers, terminals, dict(self._label_ends), decisions, counts, latest,
                            None if latest is None else cutoff, replay[0].timestamp if replay else None,
                            self._earliest, self._review_cases(decisions))

    def _review_cases(self, decisions: list[tuple[int, bytes, int]]) -> dict[int, list[LogEntry]]:
        """The review-case logs of the restored REVIEW decisions and every analyst's verdict read."""
        reviews = []
        for _, raw, _ in decisions:
            record = orjson.loads(raw)
            if record.get("decision") == "REVIEW":
                reviews.append((float(record["event_timestamp"]), int(record["customer_id"])))
        labels = [label for entries in self._labels.values() for _, label in entries]
        return case_logs(reviews, analyst_verdicts(labels))

    def _restorable(self, now_s: float, decision_ttl_s: float) -> list[tuple[int, bytes, int]]:
        """(id, JSON, seconds left) of the decisions not expired yet."""
        out = []
        for transaction_id, decision in self._decisions.items():
            left = decision.decided_at + decision_ttl_s - now_s
            if left <= 0:
                self.counts.decisions_expired += 1
                continue
            out.append((transaction_id, decision.raw, max(1, math.ceil(left))))
        self.counts.decisions_restored = len(out)
        return out

    def _processed(self, committed: Mapping[int, int], decisions: list[tuple[int, bytes, int]]) -> list[Transaction]:
        """The transactions the workers had counted in their state: below the committed offset or decided, not
        dead-lettered, one per id (the one its decision was made for, else the first in event-time order)."""
        counts = self.counts
        decided = {transaction_id: raw for transaction_id, raw, _ in decisions}
        candidates: list[tuple[Transaction, int, int]] = []
        for tx, partition, offset in self._transactions:
            if (partition, offset) in self._dead:
                counts.dead_lettered += 1
            elif offset < committed.get(partition, 0):
                candidates.append((tx, partition, offset))
            elif tx.transaction_id in decided:
                candidates.append((tx, partition, offset))
                counts.decided_past_committed += 1
            else:
                counts.left_to_workers += 1
        candidates.sort(key=lambda item: (item[0].timestamp, item[0].transaction_id, item[1], item[2]))
        first: dict[int, Transaction] = {}
        for tx, _, _ in candidates:
            tid = tx.transaction_id
            seen = first.get(tid)
            if seen is not None:
                if seen == tx:
                    counts.duplicates += 1
                else:
                    counts.conflicts += 1
            elif tid in decided and not same_content(tx, decided[tid]):
                counts.conflicts += 1  # the decision was made for another record of this id
            else:
                first[tid] = tx
        return list(first.values())

    def _label_queues(self, cutoff: float) -> list[_LabelQueue]:
        queues = []
        for partition in sorted(self._labels):
            entries = sorted(self._labels[partition], key=lambda item: item[0])
            kept = [label for _, label in entries if label.tx_timestamp > cutoff]
            self.counts.labels_outside_window += len(entries) - len(kept)
            queues.append(_LabelQueue(kept))
        return queues


class _LabelQueue:
    """One label partition's labels in offset order, handed out in that order: :meth:`due` gives every label up
    to the last one known by a time (those before it that are not known yet come along: applying a label early
    changes no feature)."""

    def __init__(self, labels: list[LabelEvent]) -> None:
        self.labels = labels
        self.next = 0
        # suffix minimum of known_at: a label at or after position i is known by t iff min_known[i] <= t
        self.min_known = [math.inf] * (len(labels) + 1)
        for i in range(len(labels) - 1, -1, -1):
            self.min_known[i] = min(labels[i].known_at, self.min_known[i + 1])

    def due(self, by_s: float) -> list[LabelEvent]:
        start = self.next
        while self.next < len(self.labels) and self.min_known[self.next] <= by_s:
            self.next += 1
        return self.labels[start:self.next]

    def rest(self) -> list[LabelEvent]:
        start, self.next = self.next, len(self.labels)
        return self.labels[start:]


# ---- I/O edge ----------------------------------------------------------------------------------------------------
