"""A real Redis (REDIS_URL, else the embedded redis-server) and a case store on a fresh key prefix per test."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from fraudstream.review_queue.cases import CaseStore
from fraudstream.review_queue.settings import ReviewSettings
from fraudstream.stream.types import DecisionRecord

#: Wall-clock start of every test's fake clock (epoch s).
T0 = 1_800_000_000.0


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    given = os.environ.get("REDIS_URL")
    if given:
        yield given
        return
    from fraudstream.stream.embedded import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server.url


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


def review_record(transaction_id: int, customer_id: int, amount: float, risk: float, decided_at: float = T0,
                  terminal_id: int = 7, model_version: str = "m1", heavy: float | None = 0.5,
                  reasons: tuple[str, ...] = ("heavy_review:0.5>=0.4", "LIGHT_SCORE:+1.5")) -> DecisionRecord:
    return DecisionRecord(transaction_id=transaction_id, customer_id=customer_id, terminal_id=terminal_id,
                          amount=amount, decision="REVIEW", stage="HEAVY", risk=risk, light_score=0.4,
                          anomaly_score=0.9, heavy_score=heavy, reasons=reasons, model_version=model_version,
                          event_timestamp=1_525_000_000.0 + transaction_id, decided_at=decided_at, latency_ms=3.0)


async def write_review_items(url: str, prefix: str, records) -> None:
    """Write REVIEW items exactly as the worker does: its state store's batch commit."""
    from fraudstream.stream.state.base import BatchChanges, BatchReads
    from fraudstream.stream.state.redis_store import RedisStateStore

    store = RedisStateStore.from_url(url, prefix, "labels", 3600, 3600)
    try:
        state = await store.read_batch(BatchReads([], [], [], []))
        assert await store.commit(state, BatchChanges(review_items=list(records)))
    finally:
        await store.close()


@dataclass
class Harness:
    """One event loop, one client and one store per test; ``run`` awaits a coroutine on the loop."""

    url: str
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    clock: Clock = field(default_factory=Clock)
    settings_overrides: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        import redis.asyncio as aioredis

        self.loop = asyncio.new_event_loop()
        self.redis = aioredis.from_url(self.url, decode_responses=True)
        self.settings = ReviewSettings(redis_url=self.url, redis_prefix=self.prefix, **self.settings_overrides)
        self.store = CaseStore(self.redis, self.settings, clock=self.clock)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def add_items(self, *records: DecisionRecord) -> None:
        """Write REVIEW items exactly as the worker does, then ingest them into cases."""
        self.run(write_review_items(self.url, self.prefix, records))
        self.run(self.store.ingest())

    def close(self) -> None:
        async def cleanup() -> None:
            keys = [k async for k in self.redis.scan_iter(match=f"{self.prefix}:*", count=1000)]
            if keys:
                await self.redis.delete(*keys)
            await self.redis.aclose()

        self.run(cleanup())
        self.loop.close()


@pytest.fixture
def harness(redis_url: str) -> Iterator[Harness]:
    h = Harness(redis_url)
    yield h
    h.close()
