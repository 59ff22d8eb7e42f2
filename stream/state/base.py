"""The state store interface: what the worker reads and writes per batch, and the small reads around it.

A batch is read with one call (:meth:`StateStore.read_batch`: stored decisions of its transaction ids, the
customer and terminal histories it touches, the applied offsets of its label partitions) and written with one
compare-and-write (:meth:`StateStore.commit`): everything the batch changed, applied only while the shared state
it was computed from is unchanged.  Around it: the label offsets a starting worker resumes from, the event-time
progress of each transaction partition (for :mod:`fraudstream.stream.event_time`), and the review queue.

Implementations: :class:`fraudstream.stream.state.redis_store.RedisStateStore` (production; its keyspace is
:mod:`fraudstream.stream.state.keys`) and :class:`fraudstream.stream.state.memory.InMemoryStateStore` (tests).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from fraudstream.detectors.cascade.review_budget import DayCases
from fraudstream.stream.types import DecisionRecord


async def settled(value: bool) -> bool:
    """An awaitable that is already done with ``value`` (a write nothing had to wait for)."""
    return value


class StateStoreError(RuntimeError):
    """The store could not be read or written (connection lost, timeout); the operation may be retried."""


@dataclass(frozen=True)
class BatchReads:
    """What a batch reads: ids in first-seen order, label partitions sorted."""

    transaction_ids: list[int]
    customer_ids: list[int]  # accounts: keys of the customer histories
    terminal_ids: list[int]
    label_partitions: list[int]
    card_ids: list[int] | None = None  # cards: keys of the block list (None: the same as customer_ids)
    review_days: list[int] = field(default_factory=list)  # UTC event days whose review cases are read (budget)

    @property
    def cards(self) -> list[int]:
        return self.customer_ids if self.card_ids is None else self.card_ids


@dataclass
class BatchState:
    """What the store held for a batch when it was read.

    decisions : transaction id -> stored decision JSON, for the ids that have one.
    customers, terminals : stored histories found, as their bytes (``CustomerHistory.to_bytes`` /
        ``TerminalHistory.to_bytes``; absent ones are left out: the features start them empty).  The worker core
        decodes and encodes a batch's histories at once (``CustomerColumns.from_bytes_list``), not one object each.
    label_offsets : label partition -> applied offset (0 when none).
    snapshot : what the store needs to check, at commit, that the state is unchanged (implementation's own).
    blocked_customers : the batch's cards on the live block list (confirmed fraud; the rules stage blocks them).
    review_cases : UTC event day -> that day's review cases (the days in ``reads.review_days``;
        :mod:`~fraudstream.detectors.cascade.review_budget`).
    """

    reads: BatchReads
    decisions: dict[int, bytes]
    customers: dict[int, bytes]
    terminals: dict[int, bytes]
    label_offsets: dict[int, int]
    snapshot: object = None
    blocked_customers: frozenset[int] = frozenset()
    review_cases: dict[int, DayCases] = field(default_factory=dict)


@dataclass
class BatchChanges:
    """Everything one batch writes, as values.

    customers, terminals : histories the batch touched, as bytes (each is checked unchanged since the read, then
        written).
    label_offsets : label partition -> new applied offset, only partitions that advance (checked, then written).
    decisions : (transaction id, decision JSON) of the transactions decided by the batch.
    review_items : the REVIEW decisions among them (an item each in the review queue).
    settled_reviews : (transaction id, fraud) of the batch's new chargeback labels; a pending review item among
        them is resolved (source chargeback), so no analyst works a settled case.  Idempotent.
    review_cases : UTC event day -> the review-case log entries this batch adds to that day (cases opened,
        analysts' verdicts; appended, not checked: two workers deciding at the same time may together pass the
        day's budget by what one batch opens).
    """

    customers: dict[int, bytes] = field(default_factory=dict)
    terminals: dict[int, bytes] = field(default_factory=dict)
    label_offsets: dict[int, int] = field(default_factory=dict)
    decisions: list[tuple[int, bytes]] = field(default_factory=list)
    review_items: list[DecisionRecord] = field(default_factory=list)
    settled_reviews: list[tuple[int, bool]] = field(default_factory=list)
    review_cases: dict[int, list[tuple[int, float]]] = field(default_factory=dict)


class StateStore(Protocol):
    """The worker's shared state (see the module docstring)."""

    async def read_batch(self, reads: BatchReads) -> BatchState:
        """Read a batch's state in one round trip."""
        ...

    async def commit(self, state: BatchState, changes: BatchChanges) -> bool:
        """Write ``changes`` atomically; False (nothing written) when a checked entry changed since ``state``.

        A write that succeeds leaves ``state.snapshot`` describing the store after it, so that a next write
        computed on the same state (the next chunk of a batch) is checked against this one."""
        ...

    async def start_commit(self, state: BatchState, changes: BatchChanges) -> Awaitable[bool]:
        """:meth:`commit` in two steps: returns once the write is on its way (the store has all of it), with the
        awaitable of its result; the caller may compute meanwhile."""
        ...

    async def label_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        """Applied offset of each label partition (0 when none)."""
        ...

    async def read_progress(self, topic: str, partitions: Sequence[int]) -> list[bytes | None]:
        """Published progress of each transaction partition (encoded ``event_time.PartitionProgress``)."""
        ...

    async def publish_progress(self, topic: str, progress: Mapping[int, bytes], ttl_s: float) -> None:
        """Publish encoded progress per partition; entries expire after ``ttl_s`` (s)."""
        ...

    async def pending_reviews(self, limit: int) -> list[tuple[int, float]]:
        """(transaction id, risk) of pending review items, highest risk first."""
        ...

    async def pending_review_count(self) -> int:
        ...

    async def review_item(self, transaction_id: int) -> dict[str, str]:
        """A review item's fields (empty when there is no such item)."""
        ...

    async def resolve_review(self, transaction_id: int, fields: Mapping[str, str]) -> None:
        """Update an item's fields and take it out of the pending set, atomically."""
        ...
