"""Sends the analysts' verdicts to the labels topic, from the durable label log, at least once.

The log (Redis stream ``<p>:review:label-log``) is written in the same atomic call as the verdict; entries with
``publish = 1`` are produced here as :class:`~fraudstream.detectors.schema.LabelEvent` JSON (``source`` analyst,
``known_at`` = verdict time) keyed by terminal id like every label, and the id of the last entry delivered is
kept in ``<p>:review:label-log:published``.  After a crash between delivery and that write, a few labels are sent
again; a label is a fact about one transaction, so learning it twice changes nothing but the count.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fraudstream.detectors.schema import LabelEvent
from fraudstream.review_queue.journal import label_from_stream
from fraudstream.review_queue.settings import ReviewSettings
from fraudstream.stream.state.keys import ReviewKeys

log = logging.getLogger(__name__)

#: Log entries read per round.
PUBLISH_CHUNK = 500


def label_event(entry: dict[str, Any]) -> LabelEvent:
    """The label event of one label-log entry (as :func:`label_from_stream` gives it)."""
    return LabelEvent(transaction_id=entry["transaction_id"], terminal_id=entry["terminal_id"] or 0,
                      customer_id=entry["customer_id"] or 0, tx_timestamp=entry["tx_timestamp"] or 0.0,
                      fraud=entry["fraud"], known_at=entry["known_at"], source=entry["source"] or "analyst")


class LabelPublisher:
    """Produces unpublished label-log entries with an ``aiokafka`` producer (started by the caller)."""

    def __init__(self, redis: Any, producer: Any, settings: ReviewSettings) -> None:
        self.redis = redis
        self.producer = producer
        self.settings = settings
        self.keys = ReviewKeys(settings.redis_prefix)
        self.published = 0

    async def publish_once(self) -> int:
        """Send the next entries; returns how many label events were delivered."""
        last = await self.redis.get(self.keys.label_log_published) or "0-0"
        rows = await self.redis.xrange(self.keys.label_log, min=f"({last}", max="+", count=PUBLISH_CHUNK)
        if not rows:
            return 0
        futures = []
        for entry_id, fields in rows:
            entry = label_from_stream(entry_id, fields)
            if not entry["publish"]:
                continue
            event = label_event(entry)
            futures.append(await self.producer.send(self.settings.labels_topic, value=event.to_json(),
                                                    key=str(event.terminal_id).encode()))
        if futures:
            await asyncio.gather(*futures)
        await self.redis.set(self.keys.label_log_published, rows[-1][0])
        self.published += len(futures)
        return len(futures)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set; a broker error is logged and retried on the next round."""
        while not stop.is_set():
            try:
                while await self.publish_once() and not stop.is_set():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("publishing verdict labels failed; retrying")
            try:
                await asyncio.wait_for(stop.wait(), self.settings.publish_every_s)
            except TimeoutError:
                pass
