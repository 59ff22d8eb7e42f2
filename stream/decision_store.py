"""Decisions kept in Redis by transaction id: the worker's duplicate filter and its record of what it emitted.

Key ``<p>:dec:<transaction_id>`` holds the decision's JSON exactly as it was produced (``DecisionRecord.to_json``),
with a TTL of ``decision_ttl_s``.  A re-delivered transaction whose key exists is not scored again: its stored
bytes are re-emitted unchanged.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence


class DecisionStore:
    """Key scheme and writes of stored decisions.

    Parameters
    ----------
    prefix : prefix of every key.
    decision_ttl_s : how long a decision is kept, i.e. how late a duplicate is still recognised (s).
    """

    def __init__(self, prefix: str, decision_ttl_s: int) -> None:
        self.prefix = prefix
        self.decision_ttl_s = int(decision_ttl_s)

    def key(self, transaction_id: int) -> str:
        return f"{self.prefix}:dec:{transaction_id}"

    def add_writes(self, write: Any, transaction_ids: Iterable[int], encoded: Iterable[bytes]) -> None:
        """Add SET with expiry of each decision JSON (aligned with ``transaction_ids``) to a batch write."""
        ttl = self.decision_ttl_s
        for transaction_id, raw in zip(transaction_ids, encoded):
            write.set(self.key(transaction_id), raw, ttl)

    async def get_many(self, redis: Any, transaction_ids: Sequence[int]) -> dict[int, bytes]:
        """Stored decision JSON of those ids that have one (one MGET round trip)."""
        if not transaction_ids:
            return {}
        raws = await redis.mget([self.key(t) for t in transaction_ids])
        return {t: raw for t, raw in zip(transaction_ids, raws) if raw is not None}
