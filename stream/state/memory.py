"""The state store in process memory: same semantics as the Redis one, for tests of the worker core.

Entries are kept as the bytes the Redis store would write (histories through ``to_bytes``), so a test sees the
same round trip as production.  Expiry is not modelled.  Compare-and-write checks each touched entry against the
bytes the batch read, like the Redis script.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence

from fraudstream.detectors.cascade.review_budget import DayCases
from fraudstream.stream.state.base import BatchChanges, BatchReads, BatchState, settled
from fraudstream.stream.types import review_item_fields

#: Snapshot keys: (family, id) -> bytes read (None: absent).
_Key = tuple[str, int]


class InMemoryStateStore:
    """:class:`~fraudstream.stream.state.base.StateStore` in dictionaries (one process, no expiry)."""

    def __init__(self) -> None:
        self.decisions: dict[int, bytes] = {}
        self.customers: dict[int, bytes] = {}
        self.terminals: dict[int, bytes] = {}
        self.offsets: dict[int, int] = {}
        self.progress: dict[tuple[str, int], bytes] = {}
        self.review_items: dict[int, dict[str, str]] = {}
        self.review_pending: dict[int, float] = {}
        #: customers on the live block list.
        self.blocked: set[int] = set()
        #: UTC event day -> that day's review-case log (review budget).
        self.review_cases: dict[int, list[tuple[int, float]]] = {}
        #: commits refused because a checked entry changed (for tests).
        self.conflicts = 0

    async def read_batch(self, reads: BatchReads) -> BatchState:
        snapshot: dict[_Key, bytes | int | None] = {}
        for c in reads.customer_ids:
            snapshot["cust", c] = self.customers.get(c)
        for t in reads.terminal_ids:
            snapshot["term", t] = self.terminals.get(t)
        for p in reads.label_partitions:
            snapshot["offset", p] = self.offsets.get(p)
        return BatchState(
            reads=reads,
            decisions={t: self.decisions[t] for t in reads.transaction_ids if t in self.decisions},
            customers={c: self.customers[c] for c in reads.customer_ids if c in self.customers},
            terminals={t: self.terminals[t] for t in reads.terminal_ids if t in self.terminals},
            label_offsets={p: self.offsets.get(p, 0) for p in reads.label_partitions},
            snapshot=snapshot,
            blocked_customers=frozenset(c for c in reads.cards if c in self.blocked),
            review_cases={day: DayCases.from_log(self.review_cases.get(day, ())) for day in reads.review_days},
        )

    def _current(self, key: _Key) -> bytes | int | None:
        family, ident = key
        if family == "cust":
            return self.customers.get(ident)
        if family == "term":
            return self.terminals.get(ident)
        return self.offsets.get(ident)

    async def start_commit(self, state: BatchState, changes: BatchChanges) -> Awaitable[bool]:
        return settled(await self.commit(state, changes))

    async def commit(self, state: BatchState, changes: BatchChanges) -> bool:
        snapshot = state.snapshot
        assert isinstance(snapshot, dict), "state was not read by an InMemoryStateStore"
        checked = ([("cust", c) for c in changes.customers] + [("term", t) for t in changes.terminals]
                   + [("offset", p) for p in changes.label_offsets])
        if any(self._current(key) != snapshot.get(key) for key in checked):
            self.conflicts += 1
            return False
        self.customers.update(changes.customers)
        self.terminals.update(changes.terminals)
        self.offsets.update(changes.label_offsets)
        self.decisions.update(changes.decisions)
        for transaction_id, fraud in changes.settled_reviews:
            item = self.review_items.get(transaction_id)
            if item is not None and transaction_id in self.review_pending:
                item.update(status="resolved", verdict="fraud" if fraud else "legit", source="chargeback")
                self.review_pending.pop(transaction_id)
        for record in changes.review_items:
            self.review_items[record.transaction_id] = review_item_fields(record)
            self.review_pending[record.transaction_id] = float(record.risk)
        for day, entries in changes.review_cases.items():
            self.review_cases.setdefault(day, []).extend(entries)
        snapshot.update({key: self._current(key) for key in checked})  # for a write that follows on this state
        return True

    async def write_rebuilt(self, customers: Mapping[int, bytes], terminals: Mapping[int, bytes],
                            label_offsets: Mapping[int, int], decisions: Sequence[tuple[int, bytes, int]],
                            review_cases: Mapping[int, Sequence[tuple[int, float]]] | None = None) -> int:
        """A state rebuilt from Kafka, as :meth:`RedisStateStore.write_rebuilt` writes it (expiry not modelled)."""
        self.customers.update(customers)
        self.terminals.update(terminals)
        self.offsets.update(label_offsets)
        self.decisions.update((transaction_id, raw) for transaction_id, raw, _ in decisions)
        for day, log in (review_cases or {}).items():
            self.review_cases[day] = list(log)
        return len(customers) + len(terminals) + len(label_offsets) + len(decisions) + len(review_cases or {})

    async def label_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        return {p: self.offsets.get(p, 0) for p in partitions}

    async def read_progress(self, topic: str, partitions: Sequence[int]) -> list[bytes | None]:
        return [self.progress.get((topic, p)) for p in partitions]

    async def publish_progress(self, topic: str, progress: Mapping[int, bytes], ttl_s: float) -> None:
        for partition, value in progress.items():
            self.progress[topic, partition] = value

    async def pending_reviews(self, limit: int) -> list[tuple[int, float]]:
        ranked = sorted(self.review_pending.items(), key=lambda item: (-item[1], -item[0]))
        return ranked[:limit]

    async def pending_review_count(self) -> int:
        return len(self.review_pending)

    async def review_item(self, transaction_id: int) -> dict[str, str]:
        return dict(self.review_items.get(transaction_id, {}))

    async def resolve_review(self, transaction_id: int, fields: Mapping[str, str]) -> None:
        self.review_items.setdefault(transaction_id, {}).update(fields)
        self.review_pending.pop(transaction_id, None)
