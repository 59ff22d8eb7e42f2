"""Benchmark of the review page with a large queue: the queue page and claim-next with 100,000 pending items.

Seeds ``--items`` REVIEW items (``--items-per-card`` per card) through the worker's own state-store write into a
fresh key prefix of the embedded Redis (or ``REDIS_URL``), moves them into cases (timed), starts
``fraudstream review`` as a child process and measures over HTTP from a logged-in session:

* ``GET /queue`` (first page, priority order), and with a filter (``min_risk``) that passes over most cases;
* ``POST /api/claim`` + ``POST /api/cases/<card>/release`` (claim-next, then hand the case back);
* ``CaseStore.claim_next`` called directly (the Lua call alone).

Floor: p99 of the queue page and of claim-next <= 100 ms.  Usage:
``python bench/bench_review.py [--items 100000] [--items-per-card 1] [--requests 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

FLOOR_MS = 100.0
MS_PER_S = 1000.0
WRITE_CHUNK = 2000
STARTUP_TIMEOUT_S = 60.0
PASSWORD = "bench password 123"


def percentiles(samples_s: list[float]) -> tuple[float, float, float]:
    ms = np.asarray(samples_s) * MS_PER_S
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(ms.max())


async def seed(redis_url: str, prefix: str, items: int, per_card: int) -> tuple[float, float]:
    """Write the items as the worker does and ingest them into cases; (write s, ingest s)."""
    import redis.asyncio as aioredis

    from fraudstream.review_queue.cases import CaseStore
    from fraudstream.review_queue.settings import ReviewSettings
    from fraudstream.review_queue.users import UserStore
    from fraudstream.stream.state.base import BatchChanges, BatchReads
    from fraudstream.stream.state.redis_store import RedisStateStore
    from fraudstream.stream.types import DecisionRecord

    rng = np.random.default_rng(0)
    client = aioredis.from_url(redis_url, decode_responses=True)
    worker_store = RedisStateStore.from_url(redis_url, prefix, "labels", 3600, 3600)
    now = time.time()
    started = time.perf_counter()
    for start in range(0, items, WRITE_CHUNK):
        records = []
        for i in range(start, min(items, start + WRITE_CHUNK)):
            risk = float(rng.uniform(0.3, 1.0))
            records.append(DecisionRecord(
                transaction_id=i + 1, customer_id=i // per_card, terminal_id=int(rng.integers(0, 10_000)),
                amount=float(rng.gamma(2.0, 40.0)), decision="REVIEW", stage="HEAVY", risk=risk,
                light_score=risk, anomaly_score=float(rng.uniform()), heavy_score=risk,
                reasons=(f"heavy_review:{risk:.3f}>=0.300", "LIGHT_SCORE:+2.100", "TERMINAL_ID_RISK_7DAY_WINDOW:+1.2"),
                model_version="bench", event_timestamp=1_530_000_000.0 + i,
                decided_at=now - float(rng.uniform(0, 7200)),
                latency_ms=5.0))
        state = await worker_store.read_batch(BatchReads([], [], [], []))
        await worker_store.commit(state, BatchChanges(review_items=records))  # the worker's own write
    written = time.perf_counter() - started
    await worker_store.close()
    settings = ReviewSettings(redis_url=redis_url, redis_prefix=prefix)
    store = CaseStore(client, settings)
    started = time.perf_counter()
    await store.ingest()
    ingested = time.perf_counter() - started
    await UserStore(client, settings).add("bench", PASSWORD, "analyst")
    await client.aclose()
    return written, ingested


async def direct_claims(redis_url: str, prefix: str, n: int) -> list[float]:
    import redis.asyncio as aioredis

    from fraudstream.review_queue.cases import CaseStore
    from fraudstream.review_queue.settings import ReviewSettings

    client = aioredis.from_url(redis_url, decode_responses=True)
    store = CaseStore(client, ReviewSettings(redis_url=redis_url, redis_prefix=prefix))
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        claimed = await store.claim_next("direct")
        samples.append(time.perf_counter() - t)
        await store.handover("direct", claimed[0], "release")
    await client.aclose()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--items-per-card", type=int, default=1)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    import httpx

    from fraudstream.stream.embedded import EmbeddedRedis, free_port, spawn_logged, stop_process_group

    log_dir = Path(tempfile.mkdtemp(prefix="fraudstream-bench-review-"))
    embedded = None
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        embedded = EmbeddedRedis(log_dir=log_dir)
        embedded.__enter__()
        redis_url = embedded.url
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    proc = None
    try:
        written, ingested = asyncio.run(seed(redis_url, prefix, args.items, args.items_per_card))
        cards = (args.items + args.items_per_card - 1) // args.items_per_card
        port = free_port()
        env = dict(os.environ, REDIS_URL=redis_url, FRAUDSTREAM_REVIEW_REDIS_PREFIX=prefix,
                   FRAUDSTREAM_REVIEW_PAGE_PORT=str(port), KAFKA_BOOTSTRAP_SERVERS="")
        proc = spawn_logged([sys.executable, "-m", "fraudstream.cli.main", "review", "--log-level", "warning"],
                            log_dir / "review.log", env)
        base = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=base, timeout=30.0)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"the review page did not start; log: {log_dir / 'review.log'}")
            time.sleep(0.2)
        token = client.post("/api/login", json={"user": "bench", "password": PASSWORD}).json()["csrf_token"]
        headers = {"X-CSRF-Token": token}

        def timed(call) -> list[float]:
            call()  # warm-up
            out = []
            for _ in range(args.requests):
                t = time.perf_counter()
                response = call()
                out.append(time.perf_counter() - t)
                assert response.status_code < 400, response.text[:300]
            return out

        queue = timed(lambda: client.get("/queue"))
        filtered = timed(lambda: client.get("/queue?min_risk=0.99"))

        def claim_release():
            claimed = client.post("/api/claim", headers=headers)
            card = claimed.json()["customer_id"]
            client.post(f"/api/cases/{card}/release", headers=headers)
            return claimed

        claims: list[float] = []
        claim_release()
        for _ in range(args.requests):
            t = time.perf_counter()
            response = client.post("/api/claim", headers=headers)
            claims.append(time.perf_counter() - t)
            assert response.status_code == 200, response.text
            client.post(f"/api/cases/{response.json()['customer_id']}/release", headers=headers)
        direct = asyncio.run(direct_claims(redis_url, prefix, args.requests))
        client.close()
    finally:
        if proc is not None:
            stop_process_group(proc)
        if embedded is not None:
            embedded.__exit__(None, None, None)

    print(f"review bench: {args.items:,} pending items in {cards:,} cases; seeding {written:.1f} s, "
          f"ingest into cases {ingested:.1f} s ({args.items / ingested:,.0f} items/s); {args.requests} requests each")
    print(f"{'what':<48} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'floor':>10}")
    for name, samples, floor in (("GET /queue (first page, priority)", queue, FLOOR_MS),
                                 ("GET /queue?min_risk=0.99 (filter scans)", filtered, None),
                                 ("POST /api/claim (claim-next over HTTP)", claims, FLOOR_MS),
                                 ("CaseStore.claim_next (Lua call alone)", direct, None)):
        p50, p99, worst = percentiles(samples)
        verdict = "" if floor is None else ("p99 ok" if p99 <= floor else "p99 MISSED")
        print(f"{name:<48} {p50:8.1f} {p99:8.1f} {worst:8.1f} {verdict:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
