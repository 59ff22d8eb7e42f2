"""One micro-batch of the worker: parse -> dedup -> features -> score -> decisions, one atomic Redis write.

Per batch (:meth:`BatchPipeline.process`):

1. parse every raw event; a bad one becomes a dead-letter message (reason, field, original bytes) and the
   rest of the batch goes on;
2. read, in one MGET round trip, the stored decisions of the batch's transaction ids, the customer and terminal
   histories it touches and the applied offsets of the label partitions in it;
3. drop duplicates (a stored decision, or an id seen earlier in the batch): their stored decision is re-emitted
   unchanged and they are not counted in the features again; drop labels below their partition's applied offset
   (another worker, or this one before a restart, already applied them);
4. learn the new labels into terminal state, then compute the features of the new transactions incrementally,
   in event-time order (a batch holds the records of several partitions one after the other), and score them
   with ONE vectorized cascade call;
5. write histories, applied label offsets, decisions and review items with one atomic compare-and-write
   (:mod:`fraudstream.stream.batch_commit`).  When a shared key changed since step 2 (another worker updated a
   terminal), nothing is written and the batch is recomputed from fresh state, so no update is lost.

Terminal features look at transactions at least the label delay (7 days) old, from every partition; they equal the
batch path as long as no partition lags another by more than that much event time (nor by more than the terminal
state's trim margin).  The caller keeps partitions aligned in event time (:mod:`fraudstream.stream.alignment`);
within one batch, transactions are scored in event-time order.

The pipeline returns the messages to produce; the caller produces them, awaits delivery and only then commits
offsets (at-least-once; re-deliveries are answered from the stored decisions).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from fraudstream.detectors.cascade.types import Decision, Stage
from fraudstream.detectors.schema import InvalidEvent, LabelEvent, Transaction, TransactionBatch
from fraudstream.review_queue.queue import ReviewQueue
from fraudstream.stream.batch_commit import BatchCommit, BatchWrite
from fraudstream.stream.decision_store import DecisionStore
from fraudstream.stream.decisions import DecisionRecord, decision_key, encode_decisions
from fraudstream.stream.metrics import WorkerMetrics
from fraudstream.stream.online_store import OnlineFeatureStore
from fraudstream.stream.settings import StreamSettings

if TYPE_CHECKING:
    from fraudstream.stream.model_watch import ActiveModel

log = logging.getLogger(__name__)

MS_PER_S = 1000.0
#: Recomputations of one batch after concurrent changes of its shared keys before giving up (the caller retries).
MAX_STATE_CONFLICT_RETRIES = 20

# Dead-letter reason codes (the ``reason`` label of ``fraudstream_dlq_total``).
REASON_INVALID_JSON = "invalid_json"
REASON_MISSING_FIELD = "missing_field"
REASON_INVALID_FIELD = "invalid_field"
REASON_UNPARSEABLE = "unparseable"
REASON_UNKNOWN_TOPIC = "unknown_topic"


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One consumed Kafka record, as the pipeline needs it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # Kafka record timestamp (broker arrival), epoch ms
    value: bytes | None
    key: bytes | None = None
    decoded: dict | None = None  # ``value`` already decoded from JSON (by the consumer), or None


@dataclass
class ParsedBatch:
    """Valid transactions and labels of a batch (in arrival order) and dead-letter messages for the rest."""

    transactions: list[Transaction] = field(default_factory=list)
    tx_broker_ts_s: list[float] = field(default_factory=list)
    labels: list[LabelEvent] = field(default_factory=list)
    #: (partition, offset) of each label in ``labels``.
    label_at: list[tuple[int, int]] = field(default_factory=list)
    dlq: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    dlq_reasons: list[str] = field(default_factory=list)
    #: per ``dlq`` entry: (partition, offset) when it is a label event, else None.
    dlq_label_at: list[tuple[int, int] | None] = field(default_factory=list)


@dataclass
class BatchOutcome:
    """What one batch produced: messages to send and figures for metrics.

    ``decisions`` holds (key, JSON) per valid transaction in arrival order, duplicates included (their stored
    JSON); ``broker_ts_s`` the Kafka record timestamp (epoch s) of each of them; ``new_decisions`` the JSON of
    the transactions decided by this batch.
    """

    decisions: list[tuple[bytes, bytes]]
    broker_ts_s: np.ndarray
    dlq: list[tuple[bytes | None, bytes]]
    new_decisions: list[bytes]
    duplicates: int
    labels_learned: int
    review_items: int
    model_version: str | None
    #: label partition -> offset up to which (exclusive) its labels are now applied in the store.
    labels_applied: dict[int, int] = field(default_factory=dict)
    #: reason code of each ``dlq`` message.
    dlq_reasons: list[str] = field(default_factory=list)
    #: the new transactions' arrays (decision, stage, scores), for metrics.
    scored: "_Scored | None" = None

    @property
    def new_records(self) -> list[DecisionRecord]:
        """The new decisions as records (parsed from their JSON; for tests and tools, not the hot path)."""
        return [DecisionRecord.from_json(raw) for raw in self.new_decisions]


def dead_letter(event: RawEvent, reason_code: str, reason: str, field_name: str | None) -> bytes:
    """Dead-letter JSON: reason code and text, field, original bytes (base64) and where the event came from."""
    original = event.value if event.value is not None else b""
    return json.dumps({
        "reason_code": reason_code, "reason": reason, "field": field_name,
        "original_b64": base64.b64encode(original).decode("ascii"), "original_was_null": event.value is None,
        "topic": event.topic, "partition": event.partition, "offset": event.offset,
        "timestamp_ms": event.timestamp_ms,
    }, separators=(",", ":")).encode()


def _reason_code(exc: InvalidEvent) -> str:
    if exc.field is None:
        return REASON_INVALID_JSON
    return REASON_MISSING_FIELD if exc.reason == "missing" else REASON_INVALID_FIELD


def parse_events(events: Sequence[RawEvent], transactions_topic: str, labels_topic: str) -> ParsedBatch:
    """Parse and validate raw events; never raises for a bad event (it goes to ``dlq`` with its reason)."""
    out = ParsedBatch()
    for event in events:
        try:
            if event.topic == transactions_topic:
                if event.value is None:
                    raise InvalidEvent("empty message (null value)")
                out.transactions.append(Transaction.from_json(event.decoded if event.decoded is not None
                                                              else event.value))
                out.tx_broker_ts_s.append(event.timestamp_ms / MS_PER_S)
            elif event.topic == labels_topic:
                if event.value is None:
                    raise InvalidEvent("empty message (null value)")
                out.labels.append(LabelEvent.from_json(event.value))
                out.label_at.append((event.partition, event.offset))
            else:
                _add_dead_letter(out, event, labels_topic, REASON_UNKNOWN_TOPIC,
                                 f"no handler for topic {event.topic!r}", None)
        except InvalidEvent as exc:
            _add_dead_letter(out, event, labels_topic, _reason_code(exc), exc.reason, exc.field)
        except Exception as exc:  # anything else one event can raise must not stop the batch
            _add_dead_letter(out, event, labels_topic, REASON_UNPARSEABLE, repr(exc), None)
    return out


def _add_dead_letter(out: ParsedBatch, event: RawEvent, labels_topic: str, code: str, reason: str,
                     field_name: str | None) -> None:
    out.dlq.append((event.key, dead_letter(event, code, reason, field_name)))
    out.dlq_reasons.append(code)
    out.dlq_label_at.append((event.partition, event.offset) if event.topic == labels_topic else None)



@dataclass
class _Plan:
    """What of a parsed batch is new, given what Redis holds."""

    new_index: list[int]  # positions in ParsedBatch.transactions to score
    duplicate_of: dict[int, int]  # position -> earlier position in this batch with the same id
    stored: dict[int, bytes]  # transaction id -> stored decision JSON
    new_labels: list[LabelEvent]  # labels at or above their partition's applied offset, in arrival order
    dlq_index: list[int]  # positions in ParsedBatch.dlq to send (label dead letters already sent are left out)
    applied: dict[int, int]  # label partition -> new applied offset (only partitions that advance)


def plan_batch(parsed: ParsedBatch, stored: dict[int, bytes], applied_before: dict[int, int]) -> _Plan:
    """Split a parsed batch into new and already-handled events.

    Parameters
    ----------
    parsed : the batch.
    stored : transaction id -> stored decision JSON, for the ids that have one.
    applied_before : label partition -> applied offset stored in Redis (labels below it are already applied).
    """
    new_index: list[int] = []
    duplicate_of: dict[int, int] = {}
    first_seen: dict[int, int] = {}
    for i, tx in enumerate(parsed.transactions):
        tid = tx.transaction_id
        if tid in stored:
            continue
        if tid in first_seen:
            duplicate_of[i] = first_seen[tid]
        else:
            first_seen[tid] = i
            new_index.append(i)
    applied = dict(applied_before)
    seen: set[tuple[int, int]] = set()
    new_labels: list[LabelEvent] = []
    for label, (partition, offset) in zip(parsed.labels, parsed.label_at):
        if offset < applied_before.get(partition, 0) or (partition, offset) in seen:
            continue
        seen.add((partition, offset))
        new_labels.append(label)
        applied[partition] = max(applied[partition], offset + 1)
    dlq_index: list[int] = []
    for j, at in enumerate(parsed.dlq_label_at):
        if at is not None:
            partition, offset = at
            if offset < applied_before.get(partition, 0) or at in seen:
                continue
            seen.add(at)
            applied[partition] = max(applied[partition], offset + 1)
        dlq_index.append(j)
    advanced = {p: o for p, o in applied.items() if o > applied_before.get(p, 0)}
    return _Plan(new_index, duplicate_of, stored, new_labels, dlq_index, advanced)


@dataclass
class _Scored:
    """The new transactions of a batch, scored."""

    batch: TransactionBatch
    decision: np.ndarray
    stage: np.ndarray
    risk: np.ndarray
    scores: dict[str, np.ndarray]
    encoded: list[bytes]


class BatchPipeline:
    """Runs micro-batches against Redis and the active model.

    Parameters
    ----------
    settings : topics, key prefix and TTLs.
    redis : a ``redis.asyncio.Redis`` client (``decode_responses=False``).
    model : returns the model to score the next batch with (read once per batch), e.g. ``watcher.current``.
    metrics : where counts and score distributions go (None: no metrics).
    clock : wall clock, epoch s.
    """

    def __init__(self, settings: StreamSettings, redis: Any, model: Callable[[], ActiveModel | None],
                 metrics: WorkerMetrics | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.redis = redis
        self.model = model
        self.metrics = metrics
        self.clock = clock
        self.state = OnlineFeatureStore(settings.redis_prefix, settings.state_ttl_s)
        self.decision_store = DecisionStore(settings.redis_prefix, settings.decision_ttl_s)
        self.review = ReviewQueue(settings.redis_prefix)
        self.commit = BatchCommit(redis)

    async def process(self, events: Sequence[RawEvent]) -> BatchOutcome:
        """Process one micro-batch; raises on infrastructure errors (the caller retries the same batch)."""
        parsed = parse_events(events, self.settings.transactions_topic, self.settings.labels_topic)
        model = self.model()
        if model is None and parsed.transactions:
            raise RuntimeError("no model loaded")
        for attempt in range(MAX_STATE_CONFLICT_RETRIES):
            outcome = await self._attempt(parsed, model)
            if outcome is not None:
                break
            if self.metrics is not None:
                self.metrics.state_conflicts.inc()
            log.debug("state changed during batch (attempt %d); recomputing", attempt + 1)
        else:
            raise RuntimeError(f"batch state kept changing under it {MAX_STATE_CONFLICT_RETRIES} times")
        self._count(parsed, outcome)
        return outcome

    async def applied_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        """Applied offset stored for each label partition (0 when none), one MGET round trip."""
        if not partitions:
            return {}
        topic = self.settings.labels_topic
        raws = await self.redis.mget([self.state.labels_applied_key(topic, p) for p in partitions])
        return {p: self.state.decode_offset(raw) for p, raw in zip(partitions, raws)}

    async def _attempt(self, parsed: ParsedBatch, model: ActiveModel | None) -> BatchOutcome | None:
        """One read-compute-write of the batch; None when shared state changed meanwhile (nothing written)."""
        state, labels_topic = self.state, self.settings.labels_topic
        tx_ids = list(dict.fromkeys(t.transaction_id for t in parsed.transactions))
        customer_ids = list(dict.fromkeys(t.customer_id for t in parsed.transactions))
        terminal_ids = list(dict.fromkeys([t.terminal_id for t in parsed.transactions]
                                          + [lab.terminal_id for lab in parsed.labels]))
        partitions = sorted({p for p, _ in parsed.label_at} | {at[0] for at in parsed.dlq_label_at if at})
        customer_keys = [state.customer_key(c) for c in customer_ids]
        terminal_keys = [state.terminal_key(t) for t in terminal_ids]
        offset_keys = [state.labels_applied_key(labels_topic, p) for p in partitions]
        keys = [self.decision_store.key(t) for t in tx_ids] + customer_keys + terminal_keys + offset_keys
        raws = await self.redis.mget(keys) if keys else []
        n_tx, n_cust, n_term = len(tx_ids), len(customer_ids), len(terminal_ids)
        customer_raws = raws[n_tx:n_tx + n_cust]
        terminal_raws = raws[n_tx + n_cust:n_tx + n_cust + n_term]
        offset_raws = raws[n_tx + n_cust + n_term:]
        stored = {t: raw for t, raw in zip(tx_ids, raws[:n_tx]) if raw is not None}
        applied_before = {p: state.decode_offset(raw) for p, raw in zip(partitions, offset_raws)}
        plan = plan_batch(parsed, stored, applied_before)

        # event-time order inside the batch: a batch holds several partitions one after the other, and a
        # terminal's features must see its earlier transactions from every partition (see the module docstring)
        plan.new_index.sort(key=lambda i: (parsed.transactions[i].timestamp, parsed.transactions[i].transaction_id))
        new_txs = [parsed.transactions[i] for i in plan.new_index]
        customers = state.decode_customers(customer_ids, customer_raws)
        terminals = state.decode_terminals(terminal_ids, terminal_raws)
        scored = None
        if plan.new_labels:
            model_features = model.features if model is not None else None
            if model_features is None:
                raise RuntimeError("no model loaded")
            model_features.learn_labels(plan.new_labels, terminals)
        if new_txs:
            new_ts = np.asarray([parsed.tx_broker_ts_s[i] for i in plan.new_index], dtype=np.float64)
            scored = self._score(model, new_txs, new_ts, customers, terminals)  # type: ignore[arg-type]

        write = BatchWrite()
        touched_customers = {t.customer_id for t in new_txs}
        touched_terminals = {t.terminal_id for t in new_txs} | {lab.terminal_id for lab in plan.new_labels}
        write_customers = {c: customers[c] for c in touched_customers}
        write_terminals = {t: terminals[t] for t in touched_terminals}
        for cid, key, raw in zip(customer_ids, customer_keys, customer_raws):
            if cid in touched_customers:
                write.check(key, raw)
        for tid, key, raw in zip(terminal_ids, terminal_keys, terminal_raws):
            if tid in touched_terminals:
                write.check(key, raw)
        applied_writes = {}
        for p, key, raw in zip(partitions, offset_keys, offset_raws):
            if p in plan.applied:
                write.check(key, raw)
                applied_writes[key] = plan.applied[p]
        state.add_writes(write, write_customers, write_terminals, applied_writes)
        review_items = 0
        if scored is not None:
            self.decision_store.add_writes(write, scored.batch.transaction_id.tolist(), scored.encoded)
            review_rows = np.flatnonzero(scored.decision == Decision.REVIEW).tolist()
            review_records = [DecisionRecord.from_json(scored.encoded[i]) for i in review_rows]
            review_items = self.review.add_items(write, review_records)
        if not await self.commit(write):
            return None
        labels_applied = {p: max(applied_before.get(p, 0), plan.applied.get(p, 0)) for p in partitions}
        return self._outcome(parsed, plan, scored, review_items, labels_applied,
                             model.version if model is not None else None)

    def _score(self, model: ActiveModel, txs: list[Transaction], broker_ts_s: np.ndarray, customers: dict,
               terminals: dict) -> _Scored:
        """Features (incremental, updating the histories) and one vectorized cascade call for new transactions."""
        batch = TransactionBatch.from_transactions(txs)
        features = model.features.transform(batch, customers, terminals)
        result = model.bundle.cascade.score(features, batch)
        encoded = encode_decisions(result, batch, broker_ts_s, self.clock())
        return _Scored(batch, np.asarray(result.decision), np.asarray(result.stage), np.asarray(result.risk),
                       {"light": np.asarray(result.light_score), "anomaly": np.asarray(result.anomaly_score),
                        "heavy": np.asarray(result.heavy_score)}, encoded)

    def _outcome(self, parsed: ParsedBatch, plan: _Plan, scored: _Scored | None, review_items: int,
                 labels_applied: dict[int, int], version: str | None) -> BatchOutcome:
        encoded = scored.encoded if scored is not None else []
        by_position: dict[int, bytes] = dict(zip(plan.new_index, encoded))
        decisions: list[tuple[bytes, bytes]] = []
        duplicates = 0
        for i, tx in enumerate(parsed.transactions):
            raw = by_position.get(i)
            if raw is None:
                duplicates += 1
                first = plan.duplicate_of.get(i)
                raw = by_position[first] if first is not None else plan.stored[tx.transaction_id]
            decisions.append((decision_key(tx.transaction_id), raw))
        outcome = BatchOutcome(
            decisions=decisions, broker_ts_s=np.asarray(parsed.tx_broker_ts_s, dtype=np.float64),
            dlq=[parsed.dlq[j] for j in plan.dlq_index], new_decisions=encoded, duplicates=duplicates,
            labels_learned=len(plan.new_labels), review_items=review_items, model_version=version,
            labels_applied=labels_applied, dlq_reasons=[parsed.dlq_reasons[j] for j in plan.dlq_index],
            scored=scored,
        )
        return outcome

    def _count(self, parsed: ParsedBatch, outcome: BatchOutcome) -> None:
        m = self.metrics
        if m is None:
            return
        for reason in outcome.dlq_reasons:
            m.dlq.labels(reason=reason).inc()
        if outcome.duplicates:
            m.duplicates.inc(outcome.duplicates)
        if outcome.labels_learned:
            m.labels.inc(outcome.labels_learned)
        duplicate_labels = len(parsed.labels) - outcome.labels_learned
        if duplicate_labels:
            m.duplicate_labels.inc(duplicate_labels)
        if outcome.review_items:
            m.review_items.inc(outcome.review_items)
        scored = outcome.scored
        if scored is None:
            return
        pairs, counts = np.unique(scored.decision.astype(np.int64) * 16 + scored.stage.astype(np.int64),
                                  return_counts=True)
        for pair, n in zip(pairs.tolist(), counts.tolist()):
            m.decisions.labels(decision=Decision(pair // 16).name, stage=Stage(pair % 16).name).inc(n)
        m.scores.observe_many(scored.risk, "risk")
        for kind, values in scored.scores.items():
            m.scores.observe_many(values, kind)
