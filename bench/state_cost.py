"""How the online state's cost grows with the population: Redis memory, and per-transaction cost of the state
round trip (MGET of the batch's customers and terminals, batch decode, incremental features, batch encode,
one pipelined write) at a given number of customers.

Histories are synthetic but shaped like the simulated stream's: about 2 transactions a customer a day over the
retention (31 days), terminals with 1 a day over theirs (38 days), two terminals per customer.
"""

from __future__ import annotations

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
    """Redis memory (MB, bytes per customer) and us per transaction of the state round trip."""
    import redis

    from fraudstream.detectors.features.columns import CustomerColumns, TerminalColumns
    from fraudstream.detectors.features.online import IncrementalFeatures
    from fraudstream.detectors.schema import TransactionBatch

    rng = np.random.default_rng(seed)
    client = redis.Redis.from_url(redis_url)
    prefix = f"state{n_customers}-{rng.integers(1 << 30)}"
    n_terminals = 2 * n_customers
    before = int(client.info("memory")["used_memory"])
    customers = _columns(CustomerColumns, n_customers, TX_PER_CUSTOMER_DAY, CUSTOMER_DAYS, rng, n_terminals)
    terminals = _columns(TerminalColumns, n_terminals, 1.0, TERMINAL_DAYS, rng, 0)
    for cols, kind in ((customers, "cust"), (terminals, "term")):
        raws = cols.to_bytes_list()
        for start in range(0, len(raws), WRITE_CHUNK):
            client.mset({f"{prefix}:{kind}:{k}": raws[k] for k in range(start, min(start + WRITE_CHUNK, len(raws)))})
    memory_mb = (int(client.info("memory")["used_memory"]) - before) / (1 << 20)

    features = IncrementalFeatures()
    elapsed = 0.0
    now = T0 + CUSTOMER_DAYS * DAY_S
    for k in range(batches):
        cids = rng.integers(0, n_customers, BATCH)
        tids = rng.integers(0, n_terminals, BATCH)
        batch = TransactionBatch(np.arange(BATCH, dtype=np.int64) + k * BATCH + 10**12,
                                 np.sort(now + rng.uniform(0, 60, BATCH)), cids.astype(np.int64),
                                 tids.astype(np.int64), rng.uniform(5, 150, BATCH))
        t0 = time.perf_counter()
        cu, tu = np.unique(cids).tolist(), np.unique(tids).tolist()
        raws = client.mget([f"{prefix}:cust:{c}" for c in cu] + [f"{prefix}:term:{t}" for t in tu])
        c_raw, t_raw = raws[:len(cu)], raws[len(cu):]
        result = features.transform_columns(
            batch, CustomerColumns.from_bytes_list([c for c, r in zip(cu, c_raw) if r], [r for r in c_raw if r]),
            TerminalColumns.from_bytes_list([t for t, r in zip(tu, t_raw) if r], [r for r in t_raw if r]))
        pipe = client.pipeline(transaction=False)
        pipe.mset({f"{prefix}:cust:{c}": raw for c, raw in zip(result.customers.ids.tolist(),
                                                               result.customers.to_bytes_list())})
        pipe.mset({f"{prefix}:term:{t}": raw for t, raw in zip(result.terminals.ids.tolist(),
                                                               result.terminals.to_bytes_list())})
        pipe.execute()
        elapsed += time.perf_counter() - t0
        now += 60
    for kind in ("cust", "term"):
        keys = list(client.scan_iter(f"{prefix}:{kind}:*", count=10_000))
        for start in range(0, len(keys), WRITE_CHUNK):
            client.delete(*keys[start:start + WRITE_CHUNK])
    client.close()
    return {"memory_mb": memory_mb, "bytes_per_customer": memory_mb * (1 << 20) / n_customers,
            "us_per_tx": elapsed / (batches * BATCH) * US_PER_S}
