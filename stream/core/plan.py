"""What of a parsed batch is new, given the stored state: duplicates, conflicts, labels already applied, what to
read.

A transaction whose id has a decision already (stored, or earlier in the batch) is a *duplicate* when its content
(customer, terminal, amount, time) is the same: it is answered with that decision.  With other content it is a
*conflict*: a dead letter, never given the first one's decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson

from fraudstream.detectors.cascade.review_budget import case_days, event_day
from fraudstream.detectors.schema import LabelEvent, Transaction
from fraudstream.stream.core.parse import ParsedBatch
from fraudstream.stream.state.base import BatchReads


def batch_reads(parsed: ParsedBatch, review_days: bool = False) -> BatchReads:
    """The state a batch needs: the ids of its transactions and of its labels' transactions (their stored
    decisions: duplicates, and the truth the labels tell about them), customers (the accounts whose histories
    the features read), cards (their block-list entries), terminals (of transactions and labels), label
    partitions; each in first-seen order (partitions sorted); with ``review_days`` (a review budget) the UTC
    event days of its transactions with the days before whose cases they may join, and of its labels'
    transactions, sorted."""
    txs = parsed.transactions
    return BatchReads(
        transaction_ids=list(dict.fromkeys([t.transaction_id for t in txs]
                                           + [lab.transaction_id for lab in parsed.labels])),
        customer_ids=list(dict.fromkeys(t.account for t in txs)),
        card_ids=list(dict.fromkeys(t.customer_id for t in txs)),
        terminal_ids=list(dict.fromkeys([t.terminal_id for t in txs] + [lab.terminal_id for lab in parsed.labels])),
        label_partitions=parsed.label_partitions,
        review_days=sorted({d for day in {event_day(t.timestamp) for t in txs} for d in case_days(day)}
                           | {event_day(lab.tx_timestamp) for lab in parsed.labels}) if review_days else [],
    )


def merge_reads(reads: Sequence[BatchReads]) -> BatchReads:
    """The reads of several batches as one (ids in first-seen order, partitions sorted)."""
    if len(reads) == 1:
        return reads[0]

    def union(lists: Iterable[list[int]]) -> list[int]:
        return list(dict.fromkeys(x for ids in lists for x in ids))

    return BatchReads(
        transaction_ids=union(r.transaction_ids for r in reads), customer_ids=union(r.customer_ids for r in reads),
        card_ids=union(r.cards for r in reads), terminal_ids=union(r.terminal_ids for r in reads),
        label_partitions=sorted(set(union(r.label_partitions for r in reads))),
        review_days=sorted(set(union(r.review_days for r in reads))),
    )


@dataclass
class BatchPlan:
    """What of a parsed batch is new.

    new_index : positions in ``ParsedBatch.transactions`` to score.
    duplicate_of : position -> earlier position in this batch with the same id.
    stored : transaction id -> stored decision JSON.
    new_labels : labels at or above their partition's applied offset, in arrival order.
    dlq_index : positions in ``ParsedBatch.dlq`` to send (label dead letters already sent are left out).
    applied : label partition -> new applied offset (only partitions that advance).
    conflict_index : positions in ``ParsedBatch.transactions`` whose id was decided for other content.
    """

    new_index: list[int]
    duplicate_of: dict[int, int]
    stored: dict[int, bytes]
    new_labels: list[LabelEvent]
    dlq_index: list[int]
    applied: dict[int, int]
    conflict_index: list[int] = field(default_factory=list)


def same_content(tx: Transaction, stored: bytes) -> bool:
    """Whether a stored decision JSON was made for this transaction's content (an unreadable one counts as the
    same: it is answered as before)."""
    try:
        d = orjson.loads(stored)
        made_for = (int(d["customer_id"]), int(d["terminal_id"]), float(d["amount"]), float(d["event_timestamp"]))
    except (ValueError, KeyError, TypeError):
        return True
    return made_for == (tx.customer_id, tx.terminal_id, float(tx.amount), float(tx.timestamp))


def plan_batch(parsed: ParsedBatch, stored: dict[int, bytes], applied_before: dict[int, int]) -> BatchPlan:
    """Split a parsed batch into new and already-handled events.

    Parameters
    ----------
    parsed : the batch.
    stored : transaction id -> stored decision JSON, for the ids that have one.
    applied_before : label partition -> applied offset stored (labels below it are already applied).
    """
    new_index: list[int] = []
    duplicate_of: dict[int, int] = {}
    first_seen: dict[int, int] = {}
    conflicts: list[int] = []
    txs = parsed.transactions
    for i, tx in enumerate(txs):
        tid = tx.transaction_id
        if tid in stored:
            if not same_content(tx, stored[tid]):
                conflicts.append(i)
            continue
        if tid in first_seen:
            if tx != txs[first_seen[tid]]:
                conflicts.append(i)
            else:
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
    return BatchPlan(new_index, duplicate_of, stored, new_labels, dlq_index, advanced, conflicts)
