"""The analysts' review queue in Redis: transactions the cascade could not settle (decision ``REVIEW``).

Item format (``<p>`` is ``StreamSettings.redis_prefix``):

``<p>:review:pending`` (sorted set)
    member = transaction id (decimal string), score = ``risk`` (float in [0, 1]); highest risk first is
    ``ZREVRANGE <p>:review:pending 0 N``.  An analyst's verdict removes the member.
``<p>:review:item:<transaction_id>`` (hash, no expiry), fields, all strings:
    ``transaction_id``, ``customer_id``, ``terminal_id``, ``amount`` (currency units), ``event_timestamp``
    (transaction time, epoch s), ``risk``, ``light_score``, ``anomaly_score``, ``heavy_score`` (floats; empty
    string where a stage did not run), ``reasons`` (JSON list of strings), ``model_version``, ``decided_at``
    (epoch s), ``status`` (``pending`` until a verdict), and after a verdict ``verdict`` (``fraud`` /
    ``legit``), ``analyst``, ``resolved_at`` (epoch s).

Writing is idempotent by transaction id: writing an item again rewrites the same fields and the same set member.
The worker adds these writes to the same atomic batch write as the decision itself (:meth:`ReviewQueue.add_items`),
so a REVIEW decision is never stored without its item.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterable

from fraudstream.stream.decisions import DecisionRecord

STATUS_PENDING = "pending"
STATUS_RESOLVED = "resolved"
VERDICTS = ("fraud", "legit")


def _text(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def item_fields(record: DecisionRecord) -> dict[str, str]:
    """Hash fields of one review item (see the module docstring)."""
    return {
        "transaction_id": str(record.transaction_id),
        "customer_id": str(record.customer_id),
        "terminal_id": str(record.terminal_id),
        "amount": _text(record.amount),
        "event_timestamp": _text(record.event_timestamp),
        "risk": _text(record.risk),
        "light_score": _text(record.light_score),
        "anomaly_score": _text(record.anomaly_score),
        "heavy_score": _text(record.heavy_score),
        "reasons": json.dumps(list(record.reasons)),
        "model_version": record.model_version,
        "decided_at": _text(record.decided_at),
        "status": STATUS_PENDING,
    }


class ReviewQueue:
    """Write side of the review queue (and the small reads that tools and tests need).

    Parameters
    ----------
    prefix : prefix of every key.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.pending_key = f"{prefix}:review:pending"

    def item_key(self, transaction_id: int | str) -> str:
        return f"{self.prefix}:review:item:{transaction_id}"

    def add_items(self, write: Any, records: Iterable[DecisionRecord]) -> int:
        """Add the REVIEW records among ``records`` to a batch write (``stream.batch_commit.BatchWrite``).

        Returns how many items were added.
        """
        members: dict[str, float] = {}
        for record in records:
            if not record.needs_review:
                continue
            write.hashes.append((self.item_key(record.transaction_id), item_fields(record)))
            members[str(record.transaction_id)] = float(record.risk)
        if members:
            write.zset_key = self.pending_key
            write.members.extend((score, member) for member, score in members.items())
        return len(members)

    def queue_items(self, pipe: Any, records: Iterable[DecisionRecord]) -> int:
        """Queue the writes of the REVIEW records among ``records`` on a Redis pipeline; returns how many."""
        members: dict[str, float] = {}
        for record in records:
            if not record.needs_review:
                continue
            pipe.hset(self.item_key(record.transaction_id), mapping=item_fields(record))
            members[str(record.transaction_id)] = float(record.risk)
        if members:
            pipe.zadd(self.pending_key, members)
        return len(members)

    async def pending(self, redis: Any, limit: int = 100) -> list[tuple[int, float]]:
        """(transaction id, risk) of pending items, highest risk first."""
        rows = await redis.zrevrange(self.pending_key, 0, limit - 1, withscores=True)
        return [(int(member), float(score)) for member, score in rows]

    async def pending_count(self, redis: Any) -> int:
        return int(await redis.zcard(self.pending_key))

    async def item(self, redis: Any, transaction_id: int) -> dict[str, str]:
        """The item's fields as strings (empty dict when there is no such item)."""
        raw = await redis.hgetall(self.item_key(transaction_id))
        return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                for k, v in raw.items()}

    async def resolve(self, redis: Any, transaction_id: int, verdict: str, analyst: str) -> None:
        """Record an analyst's verdict and take the item out of the pending set."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict: expected one of {VERDICTS}, got {verdict!r}")
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.item_key(transaction_id), mapping={
                "status": STATUS_RESOLVED, "verdict": verdict, "analyst": analyst, "resolved_at": repr(time.time()),
            })
            pipe.zrem(self.pending_key, str(transaction_id))
            await pipe.execute()
