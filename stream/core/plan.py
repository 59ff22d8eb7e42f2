"""What of a parsed batch is new, given the stored state: duplicates, labels already applied, what to read."""

from __future__ import annotations

from dataclasses import dataclass

from fraudstream.detectors.schema import LabelEvent
from fraudstream.stream.core.parse import ParsedBatch
from fraudstream.stream.state.base import BatchReads


def batch_reads(parsed: ParsedBatch) -> BatchReads:
    """The state a batch needs: the ids of its transactions and of its labels' transactions (their stored
    decisions: duplicates, and the truth the labels tell about them), customers, terminals (of transactions and
    labels), label partitions; each in first-seen order (partitions sorted)."""
    txs = parsed.transactions
    return BatchReads(
        transaction_ids=list(dict.fromkeys([t.transaction_id for t in txs]
                                           + [lab.transaction_id for lab in parsed.labels])),
        customer_ids=list(dict.fromkeys(t.customer_id for t in txs)),
        terminal_ids=list(dict.fromkeys([t.terminal_id for t in txs] + [lab.terminal_id for lab in parsed.labels])),
        label_partitions=parsed.label_partitions,
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
    """

    new_index: list[int]
    duplicate_of: dict[int, int]
    stored: dict[int, bytes]
    new_labels: list[LabelEvent]
    dlq_index: list[int]
    applied: dict[int, int]


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
    return BatchPlan(new_index, duplicate_of, stored, new_labels, dlq_index, advanced)
