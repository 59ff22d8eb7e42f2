"""How the online state's cost grows with the population: Redis memory, and per-transaction cost of the worker's
own state round trip at a given number of customers.

The round trip is the worker core's, through the production store (:class:`RedisStateStore`): one
``read_batch`` (a single MGET of the batch's stored decisions, customer and terminal histories, label offsets and
block-list entries), the incremental features on the stored bytes (``transform_stored``, what
``BatchPipeline`` calls), and one ``commit`` (the compare-and-write script: every history read is checked
unchanged, then the changed histories and one decision per transaction are written with their expiry).
Histories are preloaded with the store's own writer (``write_rebuilt``: the keys and expiries of a rebuilt
state).  Histories are synthetic but shaped like the simulated stream's: about 2 transactions a customer a day
over the retention (31 days), terminals with 1 a day over theirs (38 days), two terminals per customer.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from fraudstream.bench.common import US_PER_S

DAY_S = 86_400.0
T0 = 1_530_000_000.0
TX_PER_CUSTOMER_DAY = 2.0
CUSTOMER_DAYS = 31
TERMINAL_DAYS = 38
WRITE_CHUNK = 5000
BATCH = 1000
#: Expiry (s) of histories and decisions written by the run (the worker's defaults are days; these keys are
#: deleted at the end, the expiry only bounds what an interrupted run leaves behind).
RUN_TTL_S = 3600
#: A stored decision of about the size the worker writes (JSON with scores, reasons, model version; bytes).
DECISION_BYTES = 320
#: Parts of the round trip timed, in order.
PARTS = ("read", "features", "commit")


def _columns(cls: Any, n_entities: int, per_day: float, days: int, rng: np.random.Generator, with_terminals: int):
    counts = rng.poisson(per_day * days, size=n_entities).astype(np.int64)
    total = int(counts.sum())
    starts = np.zeros(n_entities + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    owner = np.repeat(np.arange(n_entities), counts)
    t = T0 + rng.uniform(0, days * DAY_S, size=total)
    order = np.lexsort((t, owner))
    t = t[order]
    ids = np.arange(total, dtype=np.int64) + 10**9
    if cls.__name__ == "CustomerColumns":
        return cls(np.arange(n_entities, dtype=np.int64), starts, t, ids, rng.uniform(5, 150, total),
                   rng.integers(0, max(with_terminals, 1), total).astype(np.int64))
    zeros = np.zeros(n_entities + 1, dtype=np.int64)
    return cls(np.arange(n_entities, dtype=np.int64), starts, t, ids, zeros, np.zeros(0), np.zeros(0, np.int64),
               np.zeros(0))


def run(redis_url: str, n_customers: int, seed: int = 0, batches: int = 10) -> dict[str, float]:
    """Redis memory of the histories (MB, bytes per customer) and us per transaction of the state round trip:
    ``us_per_tx`` in all, and its parts ``read_us``, ``features_us``, ``commit_us``."""
    return asyncio.run(_run(redis_url, n_customers, seed, batches))


async def _run(redis_url: str, n_customers: int, seed: int, batches: int) -> dict[str, float]:
    from fraudstream.detectors.features.columns import CustomerColumns, TerminalColumns
    from fraudstream.detectors.features.online import IncrementalFeatures
    from fraudstream.detectors.schema import TransactionBatch
    from fraudstream.stream.core.histories import transform_stored
    from fraudstream.stream.state.base import BatchChanges, BatchReads
    from fraudstream.stream.state.redis_store import RedisStateStore

    rng = np.random.default_rng(seed)
    prefix = f"bench-state{n_customers}-{rng.integers(1 << 30)}"
    store = RedisStateStore.from_url(redis_url, prefix, "labels", RUN_TTL_S, RUN_TTL_S)
    try:
        n_terminals = 2 * n_customers
        before = int((await store.redis.info("memory"))["used_memory"])
        customers = _columns(CustomerColumns, n_customers, TX_PER_CUSTOMER_DAY, CUSTOMER_DAYS, rng, n_terminals)
        terminals = _columns(TerminalColumns, n_terminals, 1.0, TERMINAL_DAYS, rng, 0)
        await store.write_rebuilt(dict(zip(customers.ids.tolist(), customers.to_bytes_list())),
                                  dict(zip(terminals.ids.tolist(), terminals.to_bytes_list())), {}, [],
                                  chunk=WRITE_CHUNK)
        memory_mb = (int((await store.redis.info("memory"))["used_memory"]) - before) / (1 << 20)

        features = IncrementalFeatures()
        spent = dict.fromkeys(PARTS, 0.0)
        now = T0 + CUSTOMER_DAYS * DAY_S
        decision = b"{" + b"x" * (DECISION_BYTES - 2) + b"}"
        for k in range(batches):
            cids = rng.integers(0, n_customers, BATCH).astype(np.int64)
            tids = rng.integers(0, n_terminals, BATCH).astype(np.int64)
            tx_ids = np.arange(BATCH, dtype=np.int64) + k * BATCH + 10**12
            batch = TransactionBatch(tx_ids, np.sort(now + rng.uniform(0, 60, BATCH)), cids, tids,
                                     rng.uniform(5, 150, BATCH))
            t0 = time.perf_counter()
            cu = list(dict.fromkeys(cids.tolist()))
            reads = BatchReads(tx_ids.tolist(), cu, list(dict.fromkeys(tids.tolist())), [0])
            state = await store.read_batch(reads)
            t1 = time.perf_counter()
            stored_customers, stored_terminals = dict(state.customers), dict(state.terminals)
            transform_stored(features, batch, stored_customers, stored_terminals)
            changes = BatchChanges(customers=stored_customers, terminals=stored_terminals,
                                   decisions=[(t, decision) for t in tx_ids.tolist()])
            t2 = time.perf_counter()
            if not await store.commit(state, changes):
                raise RuntimeError("state cost: the compare-and-write refused a batch nobody else wrote")
            t3 = time.perf_counter()
            for part, seconds in zip(PARTS, (t1 - t0, t2 - t1, t3 - t2)):
                spent[part] += seconds
            now += 60
        await _delete_prefix(store, prefix)
    finally:
        await store.close()
    n = batches * BATCH
    out = {"memory_mb": memory_mb, "bytes_per_customer": memory_mb * (1 << 20) / n_customers,
           "us_per_tx": sum(spent.values()) / n * US_PER_S}
    out.update({f"{part}_us": seconds / n * US_PER_S for part, seconds in spent.items()})
    return out


async def _delete_prefix(store: Any, prefix: str) -> None:
    keys = [key async for key in store.redis.scan_iter(f"{prefix}:*", count=10_000)]
    for start in range(0, len(keys), WRITE_CHUNK):
        await store.redis.delete(*keys[start:start + WRITE_CHUNK])
