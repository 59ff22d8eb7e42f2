"""The analysts' review queue: transactions the cascade could not settle (decision ``REVIEW``).

The worker writes each REVIEW decision's item in the same atomic batch write as the decision itself, so a REVIEW
decision is never stored without its item.  The items are kept in the worker's state store
(:class:`fraudstream.stream.state.base.StateStore`; on Redis a sorted set of pending transaction ids by risk and
one hash per item, see :mod:`fraudstream.stream.state.keys`); the item fields are
:func:`fraudstream.stream.types.review_item_fields`.  This module is the analysts' side: list what is pending,
read an item, record a verdict.
"""

from __future__ import annotations

import time

from fraudstream.stream.state.base import StateStore
from fraudstream.stream.types import STATUS_RESOLVED, VERDICTS


class ReviewQueue:
    """Reads and verdicts of the review queue kept in a state store.

    Parameters
    ----------
    store : the worker's state store (the same one the worker writes items to).
    """

    def __init__(self, store: StateStore) -> None:
        self.store = store

    async def pending(self, limit: int = 100) -> list[tuple[int, float]]:
        """(transaction id, risk) of pending items, highest risk first."""
        return await self.store.pending_reviews(limit)

    async def pending_count(self) -> int:
        return await self.store.pending_review_count()

    async def item(self, transaction_id: int) -> dict[str, str]:
        """The item's fields as strings (empty dict when there is no such item)."""
        return await self.store.review_item(transaction_id)

    async def resolve(self, transaction_id: int, verdict: str, analyst: str) -> None:
        """Record an analyst's verdict (``fraud`` / ``legit``) and take the item out of the pending set."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict: expected one of {VERDICTS}, got {verdict!r}")
        await self.store.resolve_review(transaction_id, {
            "status": STATUS_RESOLVED, "verdict": verdict, "analyst": analyst, "resolved_at": repr(time.time()),
        })
