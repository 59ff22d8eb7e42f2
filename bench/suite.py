"""The benchmark suite behind ``fraudstream bench``: every section, its tables and the floors next to them.

1. kernel: features + cascade per transaction by batch size, next to naive per-row XGBoost and PyOD;
2. worker end to end: ``fraudstream worker`` next to the do-nothing Faust agent and a bare aiokafka consumer on
   the same broker and kind of topic, labels in the topic (both chargeback feeds), decisions checked;
3. latency: p50 / p95 / p99 at offered rates with labels flowing, and the highest rate with p99 under 50 ms;
4. scale: 1 and 2 workers on 2 partitions (tx/s, CPU s per million), state cost by population;
5. memory: worker RSS at the start and the end of a soak (1,000 tx/s unless told), and sampled over time (with lag and
   latency).

Each figure is the median of the repetitions with [min, max].  ``quick`` runs every table with fewer and shorter
repetitions (under 2 minutes on a quiet machine).  Nothing here fails on a missed floor: the tables say so.
"""

from __future__ import annotations

import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fraudstream.bench import kernel, state_cost, stream_runs
from fraudstream.bench.common import (
    Figure,
    ModelRecipe,
    bench_frame,
    floor_cell,
    percentiles_ms,
    prepare_model,
    table,
    yardstick_ms,
)

WORKER_FLOOR_TX_S = 50_000.0
P50_FLOOR_1000_MS, P99_FLOOR_1000_MS, P99_FLOOR_5000_MS = 5.0, 20.0, 50.0
P99_LIMIT_MS = 50.0
FEEDS = ("fraud", "all")


#: Offered rate of the memory soak (tx/s) unless told otherwise.
DEFAULT_SOAK_RATE = 1000.0


#: Cards of the scale runs' data (about 2 transactions a card a day).  Workers sharing a backlog advance in steps
#: of the event-time slack (5 min) over each other's published progress; at the other sections' 1,000 cards
#: (2,000 transactions a day) a step is 7 transactions and the run measures the hand-over, not the workers.
SCALE_CUSTOMERS = 20_000


@dataclass(frozen=True)
class SuiteConfig:
    """Sizes of one run of the suite (see :meth:`quick` and :meth:`full`)."""

    repeats: int
    kernel_sizes: tuple[int, ...]
    worker_events: int
    latency_rates: tuple[float, ...]
    latency_seconds: float
    extra_rates: tuple[float, ...]
    scale_events: int
    populations: tuple[int, ...]
    soak_seconds: float
    recipe: ModelRecipe
    soak_rate: float = DEFAULT_SOAK_RATE

    @classmethod
    def quick(cls) -> SuiteConfig:
        return cls(1, (1, 100, 1000), 60_000, (1000.0, 5000.0), 4.0, (), 30_000, (5000,), 0.0,
                   ModelRecipe(light_trees=100, heavy_trees=200))

    @classmethod
    def full(cls, soak_seconds: float = 600.0, soak_rate: float = DEFAULT_SOAK_RATE) -> SuiteConfig:
        return cls(3, kernel.DEFAULT_SIZES, 150_000, (500.0, 1000.0, 2000.0, 5000.0), 20.0, (10_000.0,), 150_000,
                   (5000, 50_000, 500_000), soak_seconds, ModelRecipe(), soak_rate)


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def run_suite(config: SuiteConfig, model_dir: str | None, sections: set[str], echo: Callable[[str], None] = print
              ) -> dict[str, Any]:
    """Run the chosen sections (kernel, worker, latency, scale, memory) and print their tables as they finish."""
    from fraudstream.detectors.bundle import load_bundle
    from fraudstream.stream.embedded import EmbeddedKafka, EmbeddedRedis

    started = time.perf_counter()
    root = prepare_model(model_dir, config.recipe, echo)
    bundle = load_bundle(root)
    out: dict[str, Any] = {"yardstick_ms": {"start": yardstick_ms()}}
    echo(f"fraudstream bench, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}, machine yardstick "
         f"{out['yardstick_ms']['start']:.1f} ms; model {bundle.version} "
         f"(anomaly {bundle.cascade.anomaly.method}); each figure: median [min, max] of {config.repeats} run(s)")
    if "kernel" in sections:
        section_started = time.perf_counter()
        frame = bench_frame(60_000 if config.repeats > 1 else 30_000)
        out["kernel"] = kernel.run(bundle.cascade, frame, config.kernel_sizes, config.repeats)
        echo(kernel_table(out["kernel"]) + took(section_started))
    needs_servers = sections & {"worker", "latency", "scale", "memory"}
    if needs_servers:
        workdir = Path(tempfile.mkdtemp(prefix="fraudstream-bench-"))
        with EmbeddedKafka() as kafka, EmbeddedRedis() as redis:
            endpoints = stream_runs.Endpoints(kafka.bootstrap_servers, redis.url, workdir)
            if "worker" in sections:
                section_started = time.perf_counter()
                out["worker"] = worker_section(endpoints, root, config)
                echo(worker_table(out["worker"], config) + took(section_started))
            if "latency" in sections:
                section_started = time.perf_counter()
                out["latency"] = latency_section(endpoints, root, config)
                echo(latency_table(out["latency"]) + took(section_started))
            if "scale" in sections:
                section_started = time.perf_counter()
                out["scale"] = scale_section(endpoints, root, config, redis.url)
                echo(scale_tables(out["scale"]) + took(section_started))
            if "memory" in sections:
                section_started = time.perf_counter()
                out["memory"] = memory_section(endpoints, root, config, out.get("latency"))
                echo(memory_table(out["memory"]) + took(section_started))
        echo(f"\nlogs in {workdir}")
    out["yardstick_ms"]["end"] = yardstick_ms()
    echo(yardstick_line(out["yardstick_ms"]))
    echo(f"suite took {time.perf_counter() - started:.0f} s")
    return out


def yardstick_line(yardstick: dict[str, float]) -> str:
    """How fast the machine ran Python at the suite's start and end (see ``common.yardstick_ms``)."""
    return (f"machine yardstick: {yardstick['start']:.1f} ms at the start, {yardstick['end']:.1f} ms at the end "
            f"(a fixed pure-Python workload, lower is faster; compare two runs' figures only when these agree)")


def took(started: float) -> str:
    """A table's last line: how long (s) its section ran, servers' start-ups and data preparation included."""
    return f"\n(section took {time.perf_counter() - started:.0f} s)"


# ---- kernel --------------------------------------------------------------------------------------------------
def kernel_table(result: dict[str, Any]) -> str:
    stages = ("features", "rules", "light", "anomaly", "heavy", "policy", "reasons")
    rows = []
    for size, figures in result["sizes"].items():
        rows.append([f"{size:,}", figures["total"].cell(2), figures["cascade"].cell(2)]
                    + [figures[s].cell(2) for s in stages] + [f"{figures['flagged'].median:.3f}"])
    naive = result["naive"]
    at = result["sizes"].get(kernel.FLOOR_BATCH)
    verdict = floor_cell(None if at is None else at["cascade"].median <= kernel.CASCADE_FLOOR_US)
    note = (f"us per transaction. cascade = Cascade.score (rules .. reasons); features = state bytes decoded, "
            f"incremental features, state encoded. Naive, one row per call: XGBoost predict "
            f"{naive['xgboost'].cell(0)} us, PyOD decision_function {naive['pyod'].cell(0)} us. "
            f"Floor Cascade.score <= {kernel.CASCADE_FLOOR_US:g} us/tx at batch {kernel.FLOOR_BATCH:,}: {verdict}. "
            f"flagged = share of BLOCK / REVIEW rows (their reasons carry feature contributions).")
    return table("1. Kernel: per transaction by micro-batch size (us)",
                 ["batch", "total", "cascade", *stages, "flagged"], rows, note)


# ---- worker end to end ---------------------------------------------------------------------------------------
def worker_section(endpoints: Any, root: Path, config: SuiteConfig) -> dict[str, Any]:
    frame = bench_frame(config.worker_events)
    expected = stream_runs.expected_decisions(root, frame)
    out: dict[str, Any] = {"events": len(frame)}
    sources = {feed: stream_runs.preload(endpoints, frame, feed) for feed in FEEDS}
    for feed in FEEDS:
        rate, cpu, rss = Figure("tx/s"), Figure("s"), Figure("MB")
        checks = []
        for _ in range(config.repeats):
            r = stream_runs.run_workers(endpoints, root, sources[feed], expected=expected)
            rate.add(r.tx_per_s), cpu.add(r.cpu_s_per_million), rss.add(r.rss_mb)
            checks.append((r.decisions_ok, r.check))
        out[f"worker_{feed}"] = {"rate": rate, "cpu": cpu, "rss": rss, "checks": checks}
    noop, bare = Figure("tx/s"), Figure("tx/s")
    for _ in range(config.repeats):
        noop.add(stream_runs.noop_agent_rate(endpoints, sources["fraud"]))
        bare.add(stream_runs.bare_consumer_rate(endpoints, sources["fraud"]))
    out["noop"], out["bare"] = noop, bare
    return out


def worker_table(result: dict[str, Any], config: SuiteConfig) -> str:
    rows = []
    for feed in FEEDS:
        r = result[f"worker_{feed}"]
        ok = all(c[0] for c in r["checks"])
        label = "fraud reports only (default)" if feed == "fraud" else "one label per transaction"
        rows.append([f"fraudstream worker, labels: {label}", r["rate"].cell(0), r["cpu"].cell(1),
                     "; ".join(sorted({c[1] for c in r["checks"]})) if ok else "FAILED: " + r["checks"][0][1]])
    rows.append(["do-nothing Faust agent (take 2000 / 50 ms)", result["noop"].cell(0), "", ""])
    rows.append(["bare aiokafka consumer (getmany + orjson)", result["bare"].cell(0), "", ""])
    default = result["worker_fraud"]["rate"].median
    note = (f"{result['events']:,} transactions pre-loaded in 1 partition with their chargeback feed (7 d); "
            f"rate between the first and the last decision. Floor >= {WORKER_FLOOR_TX_S:,.0f} tx/s with the default "
            f"feed: {floor_cell(default >= WORKER_FLOOR_TX_S)}.")
    return table("2. Worker end to end, one process, one partition",
                 ["what", "tx/s", "CPU s per million tx", "decisions"], rows, note)


# ---- latency -------------------------------------------------------------------------------------------------
#: Percentiles of the event-to-decision latency in the latency table.
LATENCY_QS = ("p50", "p95", "p99")
#: The same latency split at the transaction's arrival at a bare consumer (see :mod:`~fraudstream.bench.arrivals`).
SPLIT_FIGURES = ("broker p50", "broker p99", "worker p50", "worker p99")


def latency_section(endpoints: Any, root: Path, config: SuiteConfig) -> dict[float, dict[str, Any]]:
    out: dict[float, dict[str, Any]] = {}
    rates = list(config.latency_rates)
    k = 0
    while k < len(rates):
        rate = rates[k]
        frame = bench_frame(int(rate * config.latency_seconds), seed=11)
        figures = {q: Figure("ms") for q in (*LATENCY_QS, *SPLIT_FIGURES)}
        achieved = Figure("tx/s")
        for _ in range(config.repeats):
            r = stream_runs.latency_run(endpoints, root, frame, rate, "fraud")
            for q, v in zip(LATENCY_QS, percentiles_ms(r["latency_ms"])):
                figures[q].add(v)
            for part in ("broker", "worker"):
                for q, v in zip(("p50", "p99"), percentiles_ms(r[f"{part}_ms"], (50, 99))):
                    figures[f"{part} {q}"].add(v)
            achieved.add(r["achieved_tx_s"])
            out.setdefault(rate, {})["last"] = r
        out[rate].update(figures)
        out[rate]["achieved"] = achieved
        if k == len(rates) - 1 and figures["p99"].median < P99_LIMIT_MS and config.extra_rates:
            rates += [x for x in config.extra_rates if x > rate][:1]  # go on while it holds
        k += 1
    return out


def latency_table(result: dict[float, dict[str, Any]]) -> str:
    rows = []
    for rate, r in result.items():
        rows.append([f"{rate:,.0f}", r["achieved"].cell(0), *(r[q].cell(1) for q in (*LATENCY_QS, *SPLIT_FIGURES))])
    ok_rates = [rate for rate, r in result.items() if r["p99"].median < P99_LIMIT_MS]
    f1000 = result.get(1000.0)
    f5000 = result.get(5000.0)
    verdicts = []
    if f1000:
        p50_ok = floor_cell(f1000["p50"].median <= P50_FLOOR_1000_MS)
        p99_ok = floor_cell(f1000["p99"].median <= P99_FLOOR_1000_MS)
        verdicts.append(f"1,000 tx/s: p50 <= {P50_FLOOR_1000_MS:g} ms {p50_ok}, "
                        f"p99 <= {P99_FLOOR_1000_MS:g} ms {p99_ok}")
    if f5000:
        p99_ok = floor_cell(f5000["p99"].median <= P99_FLOOR_5000_MS)
        verdicts.append(f"5,000 tx/s: p99 <= {P99_FLOOR_5000_MS:g} ms {p99_ok}")
    highest = f"{max(ok_rates):,.0f} tx/s" if ok_rates else "none of the offered rates"
    note = ("Kafka timestamp of the decision - Kafka timestamp of the transaction (ms), labels flowing (fraud "
            "reports, 7 d delay). broker = the transaction's arrival at a bare consumer beside the worker - its Kafka "
            "timestamp (the replay producer's linger and the broker); worker = the decision's Kafka timestamp - that "
            f"arrival. Highest offered rate with p99 < {P99_LIMIT_MS:g} ms: {highest}. Floors: "
            + "; ".join(verdicts) + ".")
    return table("3. Latency by offered rate (ms)",
                 ["offered tx/s", "achieved tx/s", *LATENCY_QS, *SPLIT_FIGURES], rows, note)


# ---- scale ---------------------------------------------------------------------------------------------------
def scale_section(endpoints: Any, root: Path, config: SuiteConfig, redis_url: str) -> dict[str, Any]:
    frame = bench_frame(config.scale_events, n_customers=SCALE_CUSTOMERS, seed=13)
    out: dict[str, Any] = {}
    source = stream_runs.preload(endpoints, frame, "fraud", partitions=2)
    for n_workers in (1, 2):
        rate, cpu = Figure("tx/s"), Figure("s")
        checks = []
        for _ in range(config.repeats):
            r = stream_runs.run_workers(endpoints, root, source, n_workers=n_workers)
            rate.add(r.tx_per_s), cpu.add(r.cpu_s_per_million)
            checks.append(r.check)
        out[n_workers] = {"rate": rate, "cpu": cpu, "checks": checks}
    out["state"] = {}
    for population in config.populations:
        figures = {"memory_mb": Figure("MB"), "bytes_per_customer": Figure("B"), "us_per_tx": Figure("us")}
        figures.update({f"{part}_us": Figure("us") for part in state_cost.PARTS})
        for rep in range(config.repeats):
            for name, value in state_cost.run(redis_url, population, seed=rep).items():
                figures[name].add(value)
        out["state"][population] = figures
    return out


def scale_tables(result: dict[str, Any]) -> str:
    rows = [[f"{n} worker process{'es' if n > 1 else ''}", result[n]["rate"].cell(0), result[n]["cpu"].cell(1),
             "; ".join(sorted(set(result[n]["checks"])))] for n in (1, 2)]
    first = table("4a. Scale: workers on 2 partitions", ["workers", "tx/s", "CPU s per million tx", "decisions"], rows,
                  "One consumer group; the machine has 2 cores, shared with the broker and Redis.")
    rows = [[f"{p:,}", f["memory_mb"].cell(1), f["bytes_per_customer"].cell(0), f["us_per_tx"].cell(2)]
            + [f[f"{part}_us"].cell(2) for part in state_cost.PARTS] for p, f in result["state"].items()]
    second = table("4b. State cost by population", ["customers", "Redis MB", "bytes per customer", "us per tx",
                                                     "read", "features", "commit"], rows,
                   "The worker's state round trip through its store: read_batch (one MGET), features on the stored "
                   "bytes, commit (compare-and-write script, histories and one decision a transaction). Synthetic "
                   "histories: ~2 tx a customer a day over 31 days, 2 terminals per customer at 1 a day; batches of "
                   "1,000 random customers.")
    return first + "\n" + second


# ---- memory --------------------------------------------------------------------------------------------------
def memory_section(endpoints: Any, root: Path, config: SuiteConfig, latency: dict | None) -> dict[str, Any]:
    if config.soak_seconds > 0:
        rate = config.soak_rate
        frame = bench_frame(int(rate * config.soak_seconds), seed=17)
        r = stream_runs.latency_run(endpoints, root, frame, rate, "fraud")
        p50, p95, p99 = percentiles_ms(r["latency_ms"])
        return {"seconds": r["sent"] / rate, "rate": rate, "start": r["rss_start_mb"], "end": r["rss_end_mb"],
                "cpu": r["cpu_s_per_million"], "p99": p99, "sent": r["sent"], "samples": r["samples"]}
    if latency and DEFAULT_SOAK_RATE in latency:
        r = latency[DEFAULT_SOAK_RATE]["last"]
        return {"seconds": r["sent"] / DEFAULT_SOAK_RATE, "rate": DEFAULT_SOAK_RATE, "start": r["rss_start_mb"],
                "end": r["rss_end_mb"], "cpu": r["cpu_s_per_million"], "p99": percentiles_ms(r["latency_ms"])[2],
                "sent": r["sent"], "samples": r["samples"]}
    return {}


def memory_table(result: dict[str, Any]) -> str:
    if not result:
        return "\n### 5. Memory\n\n(no run)"
    rows = [[f"{result['seconds']:.0f} s at {result['rate']:,.0f} tx/s", f"{result['start']:.0f}",
             f"{result['end']:.0f}", f"{result['end'] - result['start']:+.0f}", f"{result['cpu']:.1f}",
             f"{result['p99']:.1f}"]]
    first = table("5. Memory: worker RSS over a soak", ["run", "RSS start MB", "RSS end MB", "change MB",
                                                        "CPU s per million tx", "p99 ms"], rows,
                  "RSS after the model is loaded and warmed (start) and after the last decision (end, or after "
                  f"60 s of waiting for it); {result['samples'][-1]['decided']:,.0f} of {result['sent']:,} "
                  "transactions decided, p99 of those.")
    return first + "\n" + soak_table(result["samples"])


def soak_table(samples: list[dict[str, Any]]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    rows = [[f"{s['elapsed_s']:.1f}", f"{s['sent']:,}", f"{s['decided']:,.0f}", f"{s['lag']:,.0f}", ms(s["p50_ms"]),
             ms(s["p99_ms"]), ms(s.get("broker_p50_ms")), ms(s.get("worker_p50_ms")), f"{s['rss_mb']:.0f}"]
            for s in samples]
    return table("5b. Soak over time", ["elapsed s", "sent", "decided", "lag", "p50 ms", "p99 ms", "broker p50 ms",
                                        "worker p50 ms", "RSS MB"], rows,
                 "The same run sampled over time: transactions sent (as the replay last reported, every 256 events) "
                 "and decided so far, the worker's "
                 "fraudstream_consumer_lag_messages summed over its partitions, p50 / p99 event to decision of the "
                 "decisions made since the row before and the p50 of its broker and worker parts (as in table 3), "
                 "worker RSS. The last row is taken after the last decision (or after 60 s of waiting for it).")


def summary_rows(result: dict[str, Any]) -> list[str]:
    """One line per floor, for a quick look (also printed at the end)."""
    lines = []
    if "kernel" in result and kernel.FLOOR_BATCH in result["kernel"]["sizes"]:
        v = result["kernel"]["sizes"][kernel.FLOOR_BATCH]["cascade"].median
        lines.append(f"Cascade.score at batch 1,000: {v:.2f} us/tx (floor 5)")
    if "worker" in result:
        lines.append(f"worker: {result['worker']['worker_fraud']['rate'].median:,.0f} tx/s (floor 50,000)")
    return lines


def as_jsonable(value: Any) -> Any:
    if isinstance(value, Figure):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): as_jsonable(v) for k, v in value.items() if k != "last"}
    if isinstance(value, (list, tuple)):
        return [as_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return None
    return value
