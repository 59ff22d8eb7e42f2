"""End-to-end runs against a real broker and Redis: the worker, its baselines, latency, scale and memory.

Every run gets fresh topics and a fresh Redis key prefix. The worker runs as ``fraudstream worker`` in a child
process (configured through its environment), exactly as deployed. Rates are the decisions after the first batch /
(the last decision's ``decided_at`` - the first's), read from the decisions themselves, so start-up is left out and
the worker's /metrics is asked only every :data:`DONE_POLL_S` (scraping it every 50 ms took a tenth of the worker's
time); CPU is the worker process's user + system time from its first decision to its last. Decisions are read back
from the ``decisions`` topic and checked: one per transaction, and the same decision and risk (|diff| < 1e-6) as the
offline batch path on the same data.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fraudstream.bench.arrivals import ArrivalWatcher
from fraudstream.bench.common import MS_PER_S, cpu_seconds, rss_mb
from fraudstream.bench.sampler import Sampler, every_for, with_latency
from fraudstream.stream.settings import ENV_PREFIX as WORKER_ENV_PREFIX

STARTUP_TIMEOUT_S = 180.0
POLL_S = 0.05
#: How often (s) a throughput run asks the workers' /metrics whether they are done, after the first decision.
DONE_POLL_S = 0.5
LABELS_DELAY_S = 7 * 86_400.0
#: Session time-out (s) of the bench's consumer groups (workers and the Faust baseline): the least brokers accept by
#: default.  The embedded broker holds a new group's first join for half of it: 3 s of every start instead of 5 s
#: with the worker's default of 10 s; no run measures a join.
BENCH_GROUP_SESSION_TIMEOUT_S = 6.0
RISK_TOLERANCE = 1e-6
PARTITIONS_ASSIGNED_LOG = "partitions assigned:"


@dataclass
class Endpoints:
    bootstrap: str
    redis_url: str
    workdir: Path


def fresh_settings(endpoints: Endpoints, partitions: int = 1, **overrides: Any):
    """Stream settings with topics, group and key prefix of their own."""
    from fraudstream.stream.settings import StreamSettings

    prefix = f"b{uuid.uuid4().hex[:8]}"
    values = dict(kafka_bootstrap_servers=endpoints.bootstrap, redis_url=endpoints.redis_url,
                  transactions_topic=f"{prefix}-transactions", labels_topic=f"{prefix}-labels",
                  decisions_topic=f"{prefix}-decisions", dlq_topic=f"{prefix}-dlq", app_id=f"{prefix}-app",
                  redis_prefix=prefix, metrics_port=0, web_port=0, partitions=partitions,
                  group_session_timeout_s=BENCH_GROUP_SESSION_TIMEOUT_S)
    values.update(overrides)
    return StreamSettings(**values)


@dataclass(frozen=True)
class Preloaded:
    """Topics holding a replayed frame, read by every run that measures on it (each with a group, decisions topic
    and Redis prefix of its own), so that a section sends its data once instead of once a run."""

    transactions_topic: str
    labels_topic: str
    partitions: int
    sent: int
    labels_sent: int

    def settings(self, endpoints: Endpoints) -> Any:
        """Fresh settings (group, outputs, Redis prefix) reading these topics."""
        return fresh_settings(endpoints, partitions=self.partitions, transactions_topic=self.transactions_topic,
                              labels_topic=self.labels_topic)


def preload(endpoints: Endpoints, frame: Any, label_feed: str | None, partitions: int = 1) -> Preloaded:
    """Send the frame (and its chargeback feed, unless ``label_feed`` is None) as fast as possible, to new topics."""
    from fraudstream.stream.replay import replay
    from fraudstream.stream.topics import ensure_topics

    settings = fresh_settings(endpoints, partitions=partitions)
    ensure_topics(settings.kafka_bootstrap_servers, [settings.transactions_topic, settings.labels_topic],
                  settings.partitions)
    kwargs = dict(labels_delay_s=LABELS_DELAY_S, label_feed=label_feed) if label_feed else {}
    summary = replay(frame, settings, progress=False, **kwargs)
    return Preloaded(settings.transactions_topic, settings.labels_topic, partitions, summary.sent,
                     summary.labels_sent)


class WorkerProcess:
    """``fraudstream worker`` in a child process with the given settings and model."""

    def __init__(self, settings: Any, model_dir: Path, log_path: Path, metrics_port: int) -> None:
        env = dict(os.environ)
        for name, value in settings.model_dump().items():
            env[f"{WORKER_ENV_PREFIX}{name.upper()}"] = str(value)
        env[f"{WORKER_ENV_PREFIX}MODEL_DIR"] = str(model_dir)
        env[f"{WORKER_ENV_PREFIX}METRICS_PORT"] = str(metrics_port)
        env[f"{WORKER_ENV_PREFIX}LOG_LEVEL"] = "INFO"
        self.port = metrics_port
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "fraudstream.cli.main", "worker"], env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def wait_assigned(self, count: int = 1) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while self.log_path.read_text(errors="replace").count(PARTITIONS_ASSIGNED_LOG) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start; see {self.log_path}")
            time.sleep(POLL_S)

    def decisions(self) -> float:
        return self.metric("fraudstream_decisions_total")

    def metric(self, name: str) -> float:
        """The sum of the labelled samples of ``name`` on the worker's /metrics (0 when it does not answer)."""
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()
        except OSError:
            return 0.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@dataclass
class ThroughputResult:
    tx_per_s: float
    cpu_s_per_million: float
    rss_mb: float
    decisions_ok: bool
    check: str


def run_workers(endpoints: Endpoints, model_dir: Path, source: Preloaded, n_workers: int = 1,
                expected: dict[int, tuple[str, float]] | None = None) -> ThroughputResult:
    """``n_workers`` workers in one new group on pre-loaded topics: rate, CPU, RSS, decisions."""
    from fraudstream.stream.embedded import free_port

    settings = source.settings(endpoints)
    sent = source.sent
    workers = [WorkerProcess(settings, model_dir, endpoints.workdir / f"worker-{settings.redis_prefix}-{k}.log",
                             free_port()) for k in range(n_workers)]
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S + sent / 500.0
        started = False
        cpu_start = [0.0] * n_workers
        decided_before = 0.0
        while True:
            for w in workers:
                if w.proc.poll() is not None:
                    raise RuntimeError(f"worker exited; see {w.log_path}")
            done = sum(w.decisions() for w in workers)
            if done > 0 and not started:
                started = True
                cpu_start = [cpu_seconds(w.proc.pid) for w in workers]
                decided_before = done  # the CPU from here on is that of the decisions after these
            if done >= sent:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers decided {done:.0f} of {sent} in time; logs in {endpoints.workdir}")
            time.sleep(DONE_POLL_S if started else POLL_S)
        cpu = sum(cpu_seconds(w.proc.pid) - c for w, c in zip(workers, cpu_start))
        rss = max(rss_mb(w.proc.pid) for w in workers)
    finally:
        for w in workers:
            w.stop()
    records = asyncio.run(_read_all(endpoints.bootstrap, settings.decisions_topic, sent))
    ok, check = check_decisions(records, expected, sent)
    rate, _ = decision_rate(records)
    return ThroughputResult(rate, cpu / max(sent - decided_before, 1) * 1e6, rss, ok, check)


def decision_rate(records: Sequence[bytes]) -> tuple[float, int]:
    """Decisions per second after the first batch, from the decisions' ``decided_at`` (one value per batch, or per
    chunk of a large one), and how many decisions that counts."""
    decided_at = np.sort(np.asarray([json.loads(value)["decided_at"] for value in records], dtype=np.float64))
    if decided_at.size == 0:
        return float("nan"), 0
    after_first = int(np.count_nonzero(decided_at > decided_at[0]))
    span = float(decided_at[-1] - decided_at[0])
    return (after_first / span if span > 0 else float("nan")), after_first


def expected_decisions(model_dir: Path, frame: Any) -> dict[int, tuple[str, float]]:
    """Decision and risk per transaction id from the offline batch path (features of the whole frame)."""
    from fraudstream.detectors.bundle import load_bundle
    from fraudstream.detectors.cascade.types import Decision
    from fraudstream.detectors.features.batch import compute_features
    from fraudstream.detectors.schema import TransactionBatch

    cascade = load_bundle(model_dir).cascade
    X = compute_features(frame, cascade.feature_config)[cascade.feature_names].to_numpy(dtype=np.float64)
    batch = TransactionBatch.from_frame(frame)
    out: dict[int, tuple[str, float]] = {}
    for start in range(0, len(batch), 10_000):
        rows = np.arange(start, min(start + 10_000, len(batch)))
        result = cascade.score(X[rows], batch.take(rows))
        for tid, d, r in zip(batch.transaction_id[rows].tolist(), result.decision.tolist(), result.risk.tolist()):
            out[tid] = (Decision(d).name, r)
    return out


def check_decisions(records: Sequence[bytes], expected: dict[int, tuple[str, float]] | None, sent: int
                    ) -> tuple[bool, str]:
    """One decision per transaction among the ``decisions`` records, and (given ``expected``) the offline decision
    and risk."""
    seen: dict[int, set[bytes]] = {}
    for value in records:
        seen.setdefault(json.loads(value)["transaction_id"], set()).add(value)
    twice = sum(1 for values in seen.values() if len(values) > 1)
    problems = []
    if len(seen) != sent:
        problems.append(f"{len(seen)} of {sent} transactions decided")
    if twice:
        problems.append(f"{twice} with two different decisions")
    if expected is not None:
        wrong = 0
        for tid, values in seen.items():
            data = json.loads(next(iter(values)))
            want = expected.get(tid)
            if want is None or data["decision"] != want[0] or abs(data["risk"] - want[1]) >= RISK_TOLERANCE:
                wrong += 1
        if wrong:
            problems.append(f"{wrong} differ from the offline decisions")
    text = "; ".join(problems) or (f"{len(seen):,} decisions, one each" +
                                   (", all equal to the offline path" if expected is not None else ""))
    return not problems, text


async def _read_all(bootstrap: str, topic: str, n: int, timeout_s: float = 60.0) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None, max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout_s
        idle = 0
        while time.monotonic() < deadline and idle < 6:
            batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
            got = sum(len(records) for records in batch.values())
            idle = idle + 1 if not got and len(values) >= n else 0
            for records in batch.values():
                values.extend(r.value for r in records)
    finally:
        await consumer.stop()
    return values


# ---- baselines -----------------------------------------------------------------------------------------------
def noop_agent_rate(endpoints: Endpoints, source: Preloaded) -> float:
    """The do-nothing Faust agent on pre-loaded topics (``stream.take(2000, within=0.05)``)."""
    settings = source.settings(endpoints)
    sent = source.sent
    result = endpoints.workdir / f"noop-{settings.redis_prefix}.json"
    log = open(endpoints.workdir / f"noop-{settings.redis_prefix}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "fraudstream.bench.faust_noop", endpoints.bootstrap,
                             settings.transactions_topic, str(sent), str(result)], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        proc.wait(STARTUP_TIMEOUT_S + sent / 1000)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        log.close()
    data = json.loads(result.read_text())
    return data["events"] / data["seconds"]


def bare_consumer_rate(endpoints: Endpoints, source: Preloaded) -> float:
    """A bare aiokafka consumer on pre-loaded topics: ``getmany(max_records=2000)`` and ``orjson.loads`` of every
    event."""
    return asyncio.run(_bare(endpoints.bootstrap, source.transactions_topic, source.partitions, source.sent))


async def _bare(bootstrap: str, topic: str, partitions: int, n: int) -> float:
    import orjson
    from aiokafka import AIOKafkaConsumer, TopicPartition

    # partitions assigned by hand: a group's first join would add seconds of waiting to the run, not to its rate
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                                group_id=None, max_partition_fetch_bytes=4 << 20, fetch_max_wait_ms=2)
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    count = 0
    first_t = None
    first_n = 0
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while count < n and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=100, max_records=2000)).values():
                for r in records:
                    orjson.loads(r.value)
                count += len(records)
            if first_t is None and count:
                first_t, first_n = time.perf_counter(), count
    finally:
        await consumer.stop()
    return (count - first_n) / (time.perf_counter() - first_t) if first_t else float("nan")


# ---- latency and memory --------------------------------------------------------------------------------------
def latency_run(endpoints: Endpoints, model_dir: Path, frame: Any, rate: float, label_feed: str | None,
                warmup: Any = None, sample_every_s: float | None = None) -> dict[str, Any]:
    """Transactions (and labels) replayed at ``rate`` tx/s into a running worker: latency per transaction (ms),
    worker RSS (MB) at the start and the end, CPU s per million transactions, and samples over time (sent,
    decided, lag, RSS, p50 / p99 of each interval; see :mod:`~fraudstream.bench.sampler`) every
    ``sample_every_s`` s (default: :func:`~fraudstream.bench.sampler.every_for` the run's length)."""
    from fraudstream.stream.embedded import free_port
    from fraudstream.stream.replay import replay
    from fraudstream.stream.topics import ensure_topics, topic_names

    settings = fresh_settings(endpoints)
    ensure_topics(settings.kafka_bootstrap_servers, topic_names(settings), settings.partitions)
    worker = WorkerProcess(settings, model_dir, endpoints.workdir / f"latency-{settings.redis_prefix}.log",
                           free_port())
    watcher = ArrivalWatcher(endpoints.bootstrap, settings.transactions_topic, settings.partitions)
    try:
        worker.wait_assigned()
        watcher.start()
        cpu0 = cpu_seconds(worker.proc.pid)
        sampler = Sampler(worker, sample_every_s or every_for(len(frame) / rate)).start()
        kwargs = dict(labels_delay_s=LABELS_DELAY_S, label_feed=label_feed) if label_feed else {}
        try:
            summary = replay(frame, settings, rate=rate, progress=False, on_progress=sampler.on_progress, **kwargs)
            deadline = time.monotonic() + 60
            while worker.decisions() < summary.sent and time.monotonic() < deadline:
                time.sleep(POLL_S)
        finally:
            samples = sampler.stop()
        cpu1 = cpu_seconds(worker.proc.pid)
    finally:
        worker.stop()
        arrived = watcher.stop()
    latencies, decided_at, ids = asyncio.run(_latencies(endpoints.bootstrap, settings.decisions_topic, summary.sent))
    broker_ms, worker_ms = split_latency(latencies, decided_at, ids, arrived)
    return {"latency_ms": latencies, "broker_ms": broker_ms, "worker_ms": worker_ms,
            "achieved_tx_s": summary.tx_per_s, "sent": summary.sent,
            "labels": summary.labels_sent, "rss_start_mb": samples[0]["rss_mb"], "rss_end_mb": samples[-1]["rss_mb"],
            "cpu_s_per_million": (cpu1 - cpu0) / max(summary.sent, 1) * 1e6,
            "samples": with_latency(samples, decided_at, latencies, broker_ms, worker_ms)}


def split_latency(latency_ms: np.ndarray, decided_at_ms: np.ndarray, transaction_ids: np.ndarray,
                  arrived_ms: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    """Each decision's latency split at its transaction's arrival at a bare consumer
    (:class:`~fraudstream.bench.arrivals.ArrivalWatcher`): arrival - the transaction's Kafka timestamp, and the
    decision's Kafka timestamp - arrival, in ms (NaN where the watcher did not see the transaction)."""
    arrival = np.fromiter((arrived_ms.get(t, np.nan) for t in transaction_ids.tolist()), dtype=np.float64,
                          count=len(transaction_ids))
    return arrival - (decided_at_ms - latency_ms), decided_at_ms - arrival


async def _latencies(bootstrap: str, topic: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kafka timestamp of each decision - Kafka timestamp of its transaction (ms), the decision's Kafka
    timestamp (ms since the epoch) and its transaction id."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    latencies: list[float] = []
    decided_at: list[float] = []
    ids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(latencies) < n and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                for rec in records:
                    data = json.loads(rec.value)
                    arrived_ms = data["decided_at"] * MS_PER_S - data["latency_ms"]
                    latencies.append(rec.timestamp - arrived_ms)
                    decided_at.append(rec.timestamp)
                    ids.append(int(data["transaction_id"]))
    finally:
        await consumer.stop()
    return np.asarray(latencies), np.asarray(decided_at, dtype=np.float64), np.asarray(ids, dtype=np.int64)


def rates_for_sweep(quick: bool) -> Sequence[float]:
    return (1000.0, 5000.0) if quick else (500.0, 1000.0, 2000.0, 5000.0)
