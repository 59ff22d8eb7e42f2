"""The review service's parts on one Redis (and optionally one broker), and its background loops.

Loops: move new REVIEW items into cases (every ``ingest_every_s``), send verdict labels to the labels topic
(every ``publish_every_s``, when a broker is configured), refresh the metrics and apply retention.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fraudstream.review_queue.cases import CaseStore, CaseSummary
from fraudstream.review_queue.journal import Journal
from fraudstream.review_queue.label_publisher import LabelPublisher
from fraudstream.review_queue.sessions import LoginGuard, SessionStore
from fraudstream.review_queue.settings import ReviewSettings
from fraudstream.review_queue.users import UserStore
from fraudstream.review_queue.web.metrics import ReviewMetrics

log = logging.getLogger(__name__)

#: How often the gauges are refreshed (s) and retention applied (s).
METRICS_EVERY_S = 2.0
TRIM_EVERY_S = 300.0


@dataclass(frozen=True)
class CaseView:
    """What a case page or ``/api/cases/<card>`` shows: the case, its items and whether the card is blocked."""

    case: CaseSummary
    items: list[dict[str, str]]
    blocked: bool


@dataclass
class ReviewService:
    settings: ReviewSettings
    redis: Any  # decode_responses=True
    raw_redis: Any  # decode_responses=False (the worker's binary feature state)
    clock: Callable[[], float] = time.time
    producer: Any = None
    metrics: ReviewMetrics = field(default_factory=ReviewMetrics)

    def __post_init__(self) -> None:
        s, r = self.settings, self.redis
        self.cases = CaseStore(r, s, clock=self.clock)
        self.journal = Journal(r, s, clock=self.clock, raw_redis=self.raw_redis)
        self.users = UserStore(r, s, clock=self.clock)
        self.sessions = SessionStore(r, s, clock=self.clock)
        self.guard = LoginGuard(r, s)
        self.publisher = LabelPublisher(r, self.producer, s) if self.producer is not None else None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    @classmethod
    async def connect(cls, settings: ReviewSettings, clock: Callable[[], float] = time.time) -> ReviewService:
        import redis.asyncio as aioredis

        if not settings.redis_url:
            raise ValueError("FRAUDSTREAM_REVIEW_REDIS_URL (or REDIS_URL) is not set")
        redis = aioredis.from_url(settings.redis_url, decode_responses=True)
        raw = aioredis.from_url(settings.redis_url, decode_responses=False)
        await redis.ping()
        producer = None
        if settings.kafka_bootstrap_servers:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers.split(","), acks="all",
                                        client_id="fraudstream-review-labels")
            await producer.start()
        return cls(settings, redis, raw, clock=clock, producer=producer)

    async def case_view(self, customer_id: int) -> CaseView | None:
        """The case of card ``customer_id`` with its items, or None when the card has no case."""
        case = await self.cases.case(customer_id)
        if case is None:
            return None
        return CaseView(case, await self.cases.case_items(customer_id), await self.cases.is_blocked(customer_id))

    async def start(self) -> None:
        await self.cases.publish_config()
        self._tasks = [asyncio.create_task(self._every(self.settings.ingest_every_s, self.cases.ingest, "ingest")),
                       asyncio.create_task(self._every(METRICS_EVERY_S, self.refresh_metrics, "metrics")),
                       asyncio.create_task(self._every(TRIM_EVERY_S, self.cases.trim, "retention"))]
        if self.publisher is not None:
            self._tasks.append(asyncio.create_task(self.publisher.run(self._stop)))

    async def refresh_metrics(self) -> dict[str, Any]:
        stats = await self.journal.stats(self.cases)
        self.metrics.update(stats)
        return stats

    async def _every(self, period_s: float, step: Callable[[], Any], what: str) -> None:
        while not self._stop.is_set():
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("review service: %s failed; retrying in %.1f s", what, period_s)
            try:
                await asyncio.wait_for(self._stop.wait(), period_s)
            except TimeoutError:
                pass

    async def close(self) -> None:
        self._stop.set()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, 5.0)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        if self.publisher is not None:
            try:
                await self.publisher.publish_once()  # what was given just before the stop
            except Exception:
                log.exception("review service: last label publish failed")
        if self.producer is not None:
            await self.producer.stop()
        await self.redis.aclose()
        await self.raw_redis.aclose()
