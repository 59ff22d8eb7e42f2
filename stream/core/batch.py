"""One micro-batch through the worker core: parse -> plan -> features -> score -> the batch's changes.

Per batch (:meth:`BatchPipeline.process`):

1. parse every raw event (:mod:`~fraudstream.stream.core.parse`); a bad one becomes a dead letter;
2. read the batch's state from the store in one call: stored decisions of its transaction ids, the customer and
   terminal histories it touches, the applied offsets of its label partitions;
3. plan (:mod:`~fraudstream.stream.core.plan`): duplicates (a stored decision, or an id seen earlier in the
   batch) are answered with their stored decision and not counted in the features again (the same id with other
   content is a dead letter, reason ``conflict``); labels below their
   partition's applied offset are skipped;
4. :func:`decide_batch` (pure): learn the new labels into terminal state, compute the features of the new
   transactions incrementally in event-time order (a batch holds several partitions one after the other) and
   score them with ONE vectorized cascade call (then the live block list, and with a review budget the REVIEWs
   past the day's cases allowed); the result is the batch's changes and its messages, as values;
5. the store writes the changes with one compare-and-write; when shared state changed since step 2 (another
   worker updated a terminal) nothing is written and the batch is recomputed from fresh state.

A batch larger than the pipeline's ``chunk_size`` (a worker behind) goes through steps 3-5 in chunks of it, in
event-time order, after one read: each chunk is decided while the store writes the one before
(:meth:`BatchPipeline._overlapped`).

Terminal features look at transactions at least the label delay (7 days) old, from every partition; they equal
the batch path as long as no partition lags another by more than that much event time (nor by more than the
terminal state's trim margin).  The caller keeps partitions aligned in event time
(:mod:`fraudstream.stream.event_time`).

The pipeline returns the messages to produce; the caller produces them, awaits delivery and only then commits
offsets (at-least-once; re-deliveries are answered from the stored decisions).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from fraudstream.detectors.cascade.review_budget import (
    DayCases,
    LogEntry,
    apply_review_budget,
    event_day,
    record_verdicts,
)
from fraudstream.detectors.cascade.types import Decision
from fraudstream.detectors.drift import watched_signals
from fraudstream.detectors.schema import DEFAULT_EVENT_TIME_RANGE, EventTimeRange, LabelEvent, TransactionBatch
from fraudstream.stream.core.block_list import apply_block_list
from fraudstream.stream.core.encode import encode_decisions
from fraudstream.stream.core.histories import learn_labels_stored, transform_stored
from fraudstream.stream.core.label_truth import LabelTruth, join_labels
from fraudstream.stream.core.parse import REASON_CONFLICT, ParsedBatch, dead_letter, parse_events
from fraudstream.stream.core.plan import BatchPlan, batch_reads, merge_reads, plan_batch
from fraudstream.stream.state.base import BatchChanges, BatchState, StateStore
from fraudstream.stream.types import DecisionRecord, Message, RawEvent, decision_key

if TYPE_CHECKING:
    from fraudstream.stream.model_watch import ActiveModel

log = logging.getLogger(__name__)

#: Label source of analysts' verdicts; every other label (chargebacks) settles a pending review item.
ANALYST_SOURCE = "analyst"
#: Recomputations of one batch after concurrent changes of its shared state before giving up (the caller retries).
MAX_STATE_CONFLICT_RETRIES = 20


@dataclass
class ScoredBatch:
    """The new transactions of a batch, scored: arrays (decision, stage, scores) and their decision JSON."""

    batch: TransactionBatch
    decision: np.ndarray
    stage: np.ndarray
    risk: np.ndarray
    scores: dict[str, np.ndarray]
    encoded: list[bytes]
    #: the values drift is watched on (light and anomaly scores, key features), by signal name.
    drift_signals: dict[str, np.ndarray] = field(default_factory=dict)
    #: REVIEWs turned into ALLOW because their day's review budget was spent.
    over_budget: int = 0
    #: UTC event day -> the review-case log entries these rows added (review budget).
    case_log: dict[int, list[LogEntry]] = field(default_factory=dict)

    @classmethod
    def concat(cls, parts: Sequence[ScoredBatch]) -> ScoredBatch:
        """The parts one after the other (as scored by one call)."""
        if len(parts) == 1:
            return parts[0]

        def joined(arrays: Sequence[np.ndarray]) -> np.ndarray:
            return np.concatenate(arrays)

        case_log: dict[int, list[LogEntry]] = {}
        for p in parts:
            for day, entries in p.case_log.items():
                case_log.setdefault(day, []).extend(entries)
        return cls(TransactionBatch.concat([p.batch for p in parts]), joined([p.decision for p in parts]),
                   joined([p.stage for p in parts]), joined([p.risk for p in parts]),
                   {k: joined([p.scores[k] for p in parts]) for k in parts[0].scores},
                   [raw for p in parts for raw in p.encoded],
                   {k: joined([p.drift_signals[k] for p in parts]) for k in parts[0].drift_signals},
                   sum(p.over_budget for p in parts), case_log)


@dataclass
class BatchOutcome:
    """What one batch produced: messages to send and figures for metrics.

    ``decisions`` holds (key, JSON) per valid transaction in arrival order, duplicates included (their stored
    JSON), conflicts left out (they are in ``dlq``); ``broker_ts_s`` the Kafka record timestamp (epoch s) of each
    of them; ``new_decisions`` the JSON of the transactions decided by this batch.
    """

    decisions: list[tuple[bytes, bytes]]
    broker_ts_s: np.ndarray
    dlq: list[Message]
    new_decisions: list[bytes]
    duplicates: int
    labels_learned: int
    review_items: int
    #: reason code of each ``dlq`` message.
    dlq_reasons: list[str] = field(default_factory=list)
    #: label events skipped because they were applied before.
    duplicate_labels: int = 0
    #: the new transactions' arrays, for metrics.
    scored: ScoredBatch | None = None
    #: the new labels joined to the stored decisions of their transactions, for metrics.
    label_truth: LabelTruth | None = None
    #: REVIEWs turned into ALLOW because their day's review budget was spent.
    reviews_over_budget: int = 0
    #: UTC event day -> review cases that day has opened, for the days the batch read (with a review budget).
    review_cases_opened: dict[int, int] = field(default_factory=dict)


def merge_outcomes(parts: Sequence[BatchOutcome]) -> BatchOutcome:
    """The outcomes of a batch's chunks (see :func:`split_in_event_time`) as the batch's one outcome."""
    if len(parts) == 1:
        return parts[0]
    scored = [p.scored for p in parts if p.scored is not None]
    return BatchOutcome(
        decisions=[d for p in parts for d in p.decisions],
        broker_ts_s=np.concatenate([p.broker_ts_s for p in parts]),
        dlq=[m for p in parts for m in p.dlq], new_decisions=[raw for p in parts for raw in p.new_decisions],
        duplicates=sum(p.duplicates for p in parts), labels_learned=sum(p.labels_learned for p in parts),
        review_items=sum(p.review_items for p in parts), dlq_reasons=[r for p in parts for r in p.dlq_reasons],
        duplicate_labels=sum(p.duplicate_labels for p in parts),
        scored=ScoredBatch.concat(scored) if scored else None,
        label_truth=parts[0].label_truth,  # labels go with the first chunk
        reviews_over_budget=sum(p.reviews_over_budget for p in parts),
        review_cases_opened={day: max(p.review_cases_opened.get(day, 0) for p in parts)
                             for day in {d for p in parts for d in p.review_cases_opened}},
    )


def counted_outcome(delivered: BatchOutcome, written: Sequence[BatchOutcome]) -> BatchOutcome:
    """What a batch did, for metrics: ``delivered`` (the attempt whose decisions were sent) with the chunks that
    failed attempts wrote before it (:meth:`BatchPipeline.take_written`): their decisions, labels and review items
    are the batch's, and the duplicates ``delivered`` answered for them are not duplicates.  Messages (decisions,
    dead letters) are ``delivered``'s."""
    if not written:
        return delivered
    merged = merge_outcomes([*written, delivered])
    before_decided = sum(len(p.new_decisions) for p in written)
    before_labels = sum(p.labels_learned for p in written)
    return replace(
        merged, decisions=delivered.decisions, broker_ts_s=delivered.broker_ts_s, dlq=delivered.dlq,
        dlq_reasons=delivered.dlq_reasons, duplicates=max(0, delivered.duplicates - before_decided),
        duplicate_labels=max(0, delivered.duplicate_labels - before_labels),
        label_truth=merged.label_truth if merged.label_truth is not None else delivered.label_truth,
    )


@dataclass
class BatchResult:
    """The pure result of one batch: what to write, and what to send once it is written."""

    changes: BatchChanges
    outcome: BatchOutcome


def decide_batch(parsed: ParsedBatch, state: BatchState, model: ActiveModel | None, decided_at: float,
                 review_cases_per_day: int = 0) -> BatchResult:
    """The batch's changes and messages, given its state (mutates the histories in ``state``).

    Parameters
    ----------
    parsed : the parsed batch.
    state : what the store held for it (:func:`~fraudstream.stream.core.plan.batch_reads`).
    model : the model to score with (needed when there are new transactions or labels).
    decided_at : wall-clock time of the decisions (epoch s).
    review_cases_per_day : review budget, cases a UTC day of event time (0: none;
        :mod:`~fraudstream.detectors.cascade.review_budget`); ``state.review_cases`` must hold the batch's days
        (and is updated in place: the analysts' verdicts, the cases opened).
    """
    plan = plan_batch(parsed, state.decisions, state.label_offsets)
    new_batch, plan.new_index = _in_event_time_order(parsed, plan.new_index)
    customers, terminals = state.customers, state.terminals
    scored = None
    if (plan.new_labels or plan.new_index) and model is None:
        raise RuntimeError("no model loaded")
    if plan.new_labels and model is not None:
        learn_labels_stored(model.features, plan.new_labels, terminals)
    verdicts = analyst_verdicts(plan.new_labels) if review_cases_per_day > 0 else []
    case_log: dict[int, list[LogEntry]] = {}
    if plan.new_index and model is not None:
        new_ts = np.asarray(parsed.tx_broker_ts_s, dtype=np.float64)[plan.new_index]
        scored = score_transactions(model, new_batch, new_ts, customers, terminals, decided_at,
                                    state.blocked_customers, state.review_cases, review_cases_per_day, verdicts)
    elif verdicts:
        case_log = record_verdicts(state.review_cases, verdicts)

    touched_customers = set(new_batch.account.tolist())
    touched_terminals = set(new_batch.terminal_id.tolist()) | {lab.terminal_id for lab in plan.new_labels}
    changes = BatchChanges(customers={c: customers[c] for c in touched_customers},
                           terminals={t: terminals[t] for t in touched_terminals},
                           label_offsets=dict(plan.applied),
                           settled_reviews=[(lab.transaction_id, lab.fraud) for lab in plan.new_labels
                                            if lab.source != ANALYST_SOURCE])
    if scored is not None:
        changes.decisions = list(zip(scored.batch.transaction_id.tolist(), scored.encoded))
        review_rows = np.flatnonzero(scored.decision == Decision.REVIEW).tolist()
        changes.review_items = [DecisionRecord.from_json(scored.encoded[i]) for i in review_rows]
        for day, entries in scored.case_log.items():
            case_log.setdefault(day, []).extend(entries)
    changes.review_cases = case_log
    outcome = _outcome(parsed, plan, scored, len(changes.review_items))
    outcome.label_truth = join_labels(plan.new_labels, state.decisions)
    outcome.review_cases_opened = {day: cases.opened for day, cases in state.review_cases.items()}
    return BatchResult(changes, outcome)


def score_transactions(model: ActiveModel, batch: TransactionBatch, broker_ts_s: np.ndarray,
                       customers: dict[int, bytes], terminals: dict[int, bytes], decided_at: float,
                       blocked_customers: frozenset[int] = frozenset(),
                       review_cases: MutableMapping[int, DayCases] | None = None, review_cases_per_day: int = 0,
                       verdicts: Sequence[tuple[float, int, int]] = ()) -> ScoredBatch:
    """Features (incremental, updating the stored histories: :mod:`~fraudstream.stream.core.histories`) and one
    vectorized cascade call for new transactions (in event-time order); cards on the live block list are then
    blocked by rule (:mod:`~fraudstream.stream.core.block_list`), and REVIEWs past the day's review budget
    allowed (:mod:`~fraudstream.detectors.cascade.review_budget`; ``review_cases``: UTC day -> its cases, updated
    in place; ``verdicts``: the batch's analysts' verdicts, which close cases)."""
    features = transform_stored(model.features, batch, customers, terminals)
    result = apply_block_list(model.bundle.cascade.score(features, batch), batch, blocked_customers)
    result, case_log, over_budget = apply_review_budget(result, batch.timestamp, batch.customer_id,
                                                        review_cases if review_cases is not None else {},
                                                        review_cases_per_day, verdicts)
    encoded = encode_decisions(result, batch, broker_ts_s, decided_at)
    light, anomaly = np.asarray(result.light_score), np.asarray(result.anomaly_score)
    return ScoredBatch(batch, np.asarray(result.decision), np.asarray(result.stage), np.asarray(result.risk),
                       dict(result.scores), encoded,
                       watched_signals(light, anomaly, features, model.bundle.cascade.feature_names),
                       over_budget, case_log)


def analyst_verdicts(labels: Sequence[LabelEvent]) -> list[tuple[float, int, int]]:
    """(``known_at`` epoch s, UTC event day of the transaction, card) of each analyst's label: it closes the card's
    review case (:mod:`~fraudstream.detectors.cascade.review_budget`)."""
    return [(lab.known_at, event_day(lab.tx_timestamp), lab.customer_id) for lab in labels
            if lab.source == ANALYST_SOURCE]


def _in_event_time_order(parsed: ParsedBatch, new_index: list[int]) -> tuple[TransactionBatch, list[int]]:
    """The new transactions as arrays in event-time order (time, then id), and their positions in that order.

    A batch holds several partitions one after the other, and a terminal's features must see its earlier
    transactions from every partition.
    """
    txs = parsed.transactions
    batch = TransactionBatch.from_transactions(txs if len(new_index) == len(txs) else [txs[i] for i in new_index])
    order = _event_time_order(batch)
    return batch.take(order), np.asarray(new_index, dtype=np.int64)[order].tolist()


def _event_time_order(batch: TransactionBatch) -> np.ndarray:
    """Positions of ``batch`` by event time, then transaction id (arrival order among equals: a stable sort)."""
    return np.lexsort((batch.transaction_id, batch.timestamp))


def _outcome(parsed: ParsedBatch, plan: BatchPlan, scored: ScoredBatch | None, review_items: int) -> BatchOutcome:
    encoded = scored.encoded if scored is not None else []
    n = len(parsed.transactions)
    conflict_letters: list[Message] = []
    for i in plan.conflict_index:
        event, tid = parsed.tx_events[i], parsed.transactions[i].transaction_id
        conflict_letters.append((event.key, dead_letter(
            event, REASON_CONFLICT, f"transaction id {tid} was decided before for other content (customer, terminal, "
            "amount or time); that decision stands", "transaction_id")))
    # each position's decision JSON: its own (new), its first occurrence's in the batch, or the stored one
    answer: list[bytes | None] = [None] * n
    for i, raw in zip(plan.new_index, encoded):
        answer[i] = raw
    duplicates = 0
    conflicts = set(plan.conflict_index)
    if len(plan.new_index) < n:
        for i, tx in enumerate(parsed.transactions):
            if answer[i] is not None or i in conflicts:
                continue
            duplicates += 1
            first = plan.duplicate_of.get(i)
            answer[i] = answer[first] if first is not None else plan.stored[tx.transaction_id]
    kept = [i for i in range(n) if i not in conflicts] if conflicts else range(n)
    decisions = [(decision_key(parsed.transactions[i].transaction_id), answer[i]) for i in kept]
    broker_ts_s = np.asarray(parsed.tx_broker_ts_s, dtype=np.float64)
    return BatchOutcome(
        decisions=decisions,  # type: ignore[arg-type]  # every kept position has its answer
        broker_ts_s=broker_ts_s[list(kept)] if conflicts else broker_ts_s,
        dlq=[parsed.dlq[j] for j in plan.dlq_index] + conflict_letters, new_decisions=encoded, duplicates=duplicates,
        labels_learned=len(plan.new_labels), review_items=review_items,
        dlq_reasons=[parsed.dlq_reasons[j] for j in plan.dlq_index] + [REASON_CONFLICT] * len(conflict_letters),
        duplicate_labels=len(parsed.labels) - len(plan.new_labels), scored=scored,
        reviews_over_budget=scored.over_budget if scored is not None else 0,
    )


class BatchPipeline:
    """Runs micro-batches against a state store and the active model.

    Parameters
    ----------
    store : where the batch's state is read and its changes written.
    model : returns the model to score the next batch with (read once per batch), e.g. ``watcher.current``.
    transactions_topic, labels_topic : which records are transactions and which labels.
    clock : wall clock, epoch s.
    on_conflict : called each time a batch is recomputed because its shared state changed (metrics).
    time_range : sane range of transaction timestamps (outside: invalid event).
    chunk_size : largest chunk a batch is decided in (None: the whole batch at once).
    review_cases_per_day : review budget, cases a UTC day of event time (0: none;
        :mod:`~fraudstream.detectors.cascade.review_budget`).
    """

    def __init__(self, store: StateStore, model: Callable[[], ActiveModel | None], transactions_topic: str,
                 labels_topic: str, clock: Callable[[], float] = time.time,
                 on_conflict: Callable[[], None] | None = None,
                 time_range: EventTimeRange = DEFAULT_EVENT_TIME_RANGE, chunk_size: int | None = None,
                 review_cases_per_day: int = 0) -> None:
        self.store = store
        self.model = model
        self.transactions_topic = transactions_topic
        self.labels_topic = labels_topic
        self.clock = clock
        self.on_conflict = on_conflict
        self.time_range = time_range
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size: expected >= 1, got {chunk_size}")
        self.chunk_size = chunk_size
        if review_cases_per_day < 0:
            raise ValueError(f"review_cases_per_day: expected >= 0, got {review_cases_per_day}")
        self.review_cases_per_day = review_cases_per_day
        self._written: list[BatchOutcome] = []

    async def process(self, events: Sequence[RawEvent], while_writing: Callable[[], Awaitable[None]] | None = None
                      ) -> BatchOutcome:
        """Process one micro-batch; raises on infrastructure errors (the caller retries the same batch).

        ``while_writing`` is awaited once, while the store runs the (last) write of the batch's changes (other work
        for the caller, e.g. decoding the next fetch, while Redis runs the write script); its errors are its own
        to keep (it must not raise).

        A batch of more than ``chunk_size`` transactions is decided in chunks (:func:`split_in_event_time`), read
        with one call, each chunk's write running in the store while the next chunk is decided
        (:meth:`_overlapped`); after a refused write the chunks left are done one by one.  A failure after some
        chunks were written leaves them written: the retried batch answers their transactions from the stored
        decisions, and :meth:`take_written` hands the written chunks' outcome to the caller, who counts their
        decisions as decided by this batch (:func:`counted_outcome`), not as duplicates.
        """
        parsed = parse_events(events, self.transactions_topic, self.labels_topic, self.time_range)
        model = self.model()
        if model is None and parsed.transactions:
            raise RuntimeError("no model loaded")
        chunks = [parsed] if self.chunk_size is None else split_in_event_time(parsed, self.chunk_size)
        outcomes: list[BatchOutcome] = []  # of the chunks written, in order
        try:
            if len(chunks) > 1:
                await self._overlapped(chunks, model, while_writing, outcomes)
                if len(outcomes) < len(chunks):
                    while_writing = None  # ran with the refused write, or skipped: it only fills the write's wait
            for chunk in chunks[len(outcomes):]:
                outcomes.append(await self._decide_and_write(chunk, model, while_writing))
                while_writing = None
        except Exception:
            if outcomes:
                self._written.append(merge_outcomes(outcomes))
            raise
        return merge_outcomes(outcomes)

    def take_written(self) -> list[BatchOutcome]:
        """The outcomes of the chunks written by calls of :meth:`process` that failed after writing them (their
        decisions are stored; the retry answers them as duplicates), since the last call; emptied."""
        written, self._written = self._written, []
        return written

    async def _decide_and_write(self, parsed: ParsedBatch, model: ActiveModel | None,
                                while_writing: Callable[[], Awaitable[None]] | None) -> BatchOutcome:
        """Read, decide, write; read and decide again while the write is refused (shared state changed)."""
        reads = batch_reads(parsed, self.review_cases_per_day > 0)
        for attempt in range(MAX_STATE_CONFLICT_RETRIES):
            state = await self.store.read_batch(reads)
            result = decide_batch(parsed, state, model, self.clock(), self.review_cases_per_day)
            writing = await self.store.start_commit(state, result.changes)
            if while_writing is not None:
                try:
                    await while_writing()
                except BaseException:  # cancelled: the write's result is read (its connection freed), then on
                    await asyncio.gather(writing, return_exceptions=True)
                    raise
                while_writing = None
            committed = await writing
            if committed:
                return result.outcome
            self._conflict(attempt)
        raise RuntimeError(f"batch state kept changing under it {MAX_STATE_CONFLICT_RETRIES} times")

    async def _overlapped(self, chunks: Sequence[ParsedBatch], model: ActiveModel | None,
                          while_writing: Callable[[], Awaitable[None]] | None, outcomes: list[BatchOutcome]
                          ) -> None:
        """Decide chunk k + 1 while the store writes chunk k, on one read of every chunk's state.

        Each chunk is decided on the state as the chunks before it left it (histories, decisions, label offsets:
        :func:`see_own_changes`) and the store checks each write against what the chunk before wrote; a write is
        sent only once the one before was accepted.  Appends the outcome of each chunk written to ``outcomes``, in
        order (a refused write stops it: the caller does the rest one by one).
        """
        with_days = self.review_cases_per_day > 0
        state = await self.store.read_batch(merge_reads([batch_reads(chunk, with_days) for chunk in chunks]))
        writing: Awaitable[bool] | None = None
        previous: BatchOutcome | None = None
        try:
            for chunk in chunks:
                result = decide_batch(chunk, state, model, self.clock(), self.review_cases_per_day)
                if writing is not None:
                    written, writing = await writing, None
                    if not written:
                        self._conflict(0)
                        return
                    assert previous is not None
                    outcomes.append(previous)
                see_own_changes(state, result.changes)
                writing = await self.store.start_commit(state, result.changes)
                previous = result.outcome
            if while_writing is not None:
                await while_writing()
            assert writing is not None and previous is not None
            written, writing = await writing, None
            if written:
                outcomes.append(previous)
            else:
                self._conflict(0)
        except BaseException:
            if writing is not None:  # a write on its way: its result is read (its connection freed), then the error
                accepted = await asyncio.gather(writing, return_exceptions=True)
                if accepted[0] is True and previous is not None:
                    outcomes.append(previous)  # written all the same
            raise

    def _conflict(self, attempt: int) -> None:
        if self.on_conflict is not None:
            self.on_conflict()
        log.debug("state changed during batch (attempt %d); recomputing", attempt + 1)


def split_in_event_time(parsed: ParsedBatch, size: int) -> list[ParsedBatch]:
    """A parsed batch as chunks of at most ``size`` transactions in event-time order (time, then id; arrival order
    among equals), its labels and dead letters with the first chunk.

    Deciding the chunks one after the other decides each transaction on what deciding the batch at once would
    (the batch itself is decided in that order, after its labels); of two transactions with one id and other
    content, the earlier in event time is decided and the other is the conflict.
    """
    txs = parsed.transactions
    if len(txs) <= size:
        return [parsed]
    order = _event_time_order(TransactionBatch.from_transactions(txs)).tolist()
    chunks = []
    for start in range(0, len(order), size):
        part = order[start:start + size]
        chunks.append(ParsedBatch(transactions=[txs[i] for i in part],
                                  tx_broker_ts_s=[parsed.tx_broker_ts_s[i] for i in part],
                                  tx_events=[parsed.tx_events[i] for i in part]))
    first = chunks[0]
    first.labels, first.label_at = parsed.labels, parsed.label_at
    first.dlq, first.dlq_reasons, first.dlq_label_at = parsed.dlq, parsed.dlq_reasons, parsed.dlq_label_at
    return chunks


def see_own_changes(state: BatchState, changes: BatchChanges) -> None:
    """What a chunk decided, in the state the next chunks are decided on (its histories are there already: the
    features write them back, as :func:`decide_batch` does the review cases): its decisions (a later duplicate is
    answered with them) and label offsets."""
    state.decisions.update(changes.decisions)
    state.label_offsets.update(changes.label_offsets)
