"""Online feature store in Redis: the customer and terminal histories the incremental features read and update.

Key layout (``<p>`` is ``StreamSettings.redis_prefix``), every key with a TTL of ``state_ttl_s``:

``<p>:cust:<customer_id>``
    ``CustomerHistory.to_bytes()``; written only by the worker that owns the customer's partition.
``<p>:term:<terminal_id>``
    ``TerminalHistory.to_bytes()``; shared by all workers, so it is only written inside a transaction that
    WATCHes it (optimistic concurrency: a concurrent write makes the whole batch retry from fresh state).
``<p>:labels-applied:<labels topic>:<partition>``
    offset (decimal ASCII) up to which (exclusive) the labels of that partition are in the terminal histories.
    Only ever raised; a starting worker resumes reading labels there, and labels below it are skipped.

Shared keys (terminals, label offsets) are only written by a compare-and-write that checks they still hold what
the batch read (:mod:`fraudstream.stream.batch_commit`), so concurrent workers never lose each other's updates.
The store itself does no I/O of its own in the batch path: the pipeline reads every key of a batch in one MGET
and adds the writes to its batch write, using the key and codec helpers here.  :meth:`load` is the
stand-alone read for tools and tests.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from fraudstream.detectors.features.online import CustomerHistory, TerminalHistory

class OnlineFeatureStore:
    """Codec and key scheme of the per-customer and per-terminal state.

    Parameters
    ----------
    prefix : prefix of every key.
    state_ttl_s : expiry of each state key, refreshed on every write (s).
    """

    def __init__(self, prefix: str, state_ttl_s: int) -> None:
        self.prefix = prefix
        self.state_ttl_s = int(state_ttl_s)

    def customer_key(self, customer_id: int) -> str:
        return f"{self.prefix}:cust:{customer_id}"

    def terminal_key(self, terminal_id: int) -> str:
        return f"{self.prefix}:term:{terminal_id}"

    def labels_applied_key(self, topic: str, partition: int) -> str:
        return f"{self.prefix}:labels-applied:{topic}:{partition}"

    @staticmethod
    def decode_offset(raw: bytes | None) -> int:
        """Stored applied offset (0 when absent: nothing applied yet)."""
        return 0 if raw is None else int(raw)

    @staticmethod
    def decode_customers(ids: Sequence[int], raws: Sequence[bytes | None]) -> dict[int, CustomerHistory]:
        """Histories of the customers found (absent ones are left out: the features start them empty)."""
        return {cid: CustomerHistory.from_bytes(raw) for cid, raw in zip(ids, raws) if raw is not None}

    @staticmethod
    def decode_terminals(ids: Sequence[int], raws: Sequence[bytes | None]) -> dict[int, TerminalHistory]:
        return {tid: TerminalHistory.from_bytes(raw) for tid, raw in zip(ids, raws) if raw is not None}

    def add_writes(self, write: Any, customers: Mapping[int, CustomerHistory],
                   terminals: Mapping[int, TerminalHistory], applied_offsets: Mapping[str, int]) -> None:
        """Add SETs with expiry of these histories and applied label offsets (key -> offset) to a batch write."""
        ttl = self.state_ttl_s
        for cid, history in customers.items():
            write.set(self.customer_key(cid), history.to_bytes(), ttl)
        for tid, history in terminals.items():
            write.set(self.terminal_key(tid), history.to_bytes(), ttl)
        for key, offset in applied_offsets.items():
            write.set(key, str(int(offset)).encode(), ttl)

    async def load(
        self, redis: Any, customer_ids: Sequence[int], terminal_ids: Sequence[int]
    ) -> tuple[dict[int, CustomerHistory], dict[int, TerminalHistory]]:
        """Read the histories of these customers and terminals in one MGET round trip."""
        keys = [self.customer_key(c) for c in customer_ids] + [self.terminal_key(t) for t in terminal_ids]
        raws = await redis.mget(keys) if keys else []
        n = len(customer_ids)
        return self.decode_customers(customer_ids, raws[:n]), self.decode_terminals(terminal_ids, raws[n:])
