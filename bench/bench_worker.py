"""Benchmark of the stream worker on the embedded broker and Redis, in one run.

1. Throughput: the same pre-loaded topic (1 partition) is consumed by (a) a Faust agent that does nothing but
   ``stream.take(2000, within=0.05)`` and (b) the full worker (``fraudstream worker``: parse, dedup, features,
   cascade, Redis, decisions produced and committed).  Rate = events / (last - first event handled), so start-up
   is excluded.  Floor: worker >= 90 % of the do-nothing agent.
2. Latency: transactions replayed at a fixed rate (default 1,000 tx/s) into a running worker; end-to-end latency
   per transaction = Kafka timestamp of its decision - Kafka timestamp of the transaction.  Floor: p99 <= 50 ms.

Usage: ``python bench/bench_worker.py [--events 40000] [--rate 1000] [--seconds 15] [--model-dir DIR]``
(without ``--model-dir`` a small model is trained first, ~15 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

WORKER_FLOOR_RATIO = 0.90
P99_FLOOR_MS = 50.0
NOOP_BATCH_SIZE = 2000
NOOP_BATCH_WAIT_S = 0.05
STARTUP_TIMEOUT_S = 120.0
POLL_S = 0.05
MS_PER_S = 1000.0


# ---- the do-nothing Faust agent (run as a child process) -----------------------------------------------------
def run_noop_agent(bootstrap: str, topic: str, expected: int, result_path: str) -> None:
    import faust

    app = faust.App(f"bench-noop-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}", value_serializer="raw",
                    web_enabled=False, consumer_auto_offset_reset="earliest", topic_partitions=1,
                    datadir=tempfile.mkdtemp(prefix="fraudstream-bench-faust-"))
    source = app.topic(topic, value_type=bytes)
    state = {"count": 0, "first": None}

    @app.agent(source)
    async def noop(stream):
        async for values in stream.take(NOOP_BATCH_SIZE, within=NOOP_BATCH_WAIT_S):
            now = time.perf_counter()
            if state["first"] is None:
                state["first"] = now
                state["first_batch"] = len(values)
            state["count"] += len(values)
            if state["count"] >= expected:
                # rate over the events after the first batch, between the first and the last batch
                Path(result_path).write_text(json.dumps({"events": state["count"] - state["first_batch"],
                                                         "seconds": now - state["first"]}))
                os._exit(0)

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


# ---- helpers ------------------------------------------------------------------------------------------------
def train_small_model(root: Path) -> Path:
    from fraudstream.detectors.bundle import save_bundle
    from fraudstream.training.simulator import SimulationConfig, simulate
    from fraudstream.training.train import TrainSettings, train_from_frame

    frame = simulate(SimulationConfig(n_customers=500, n_terminals=1000, nb_days=30, seed=3))
    result = train_from_frame(frame, TrainSettings(light_trees=100, heavy_trees=200, anomaly_methods=("IForest",)))
    save_bundle(result.cascade, root, result.manifest_extras)
    return root


def bench_frame(n: int):
    """``n`` simulated transactions in time order (a population large enough to spread over terminals)."""
    from fraudstream.training.simulator import SimulationConfig, simulate

    days = max(2, int(np.ceil(n / 2_000)) + 1)
    frame = simulate(SimulationConfig(n_customers=1000, n_terminals=2000, nb_days=days, seed=7))
    return frame.sort_values(["TX_DATETIME", "TRANSACTION_ID"]).head(n).reset_index(drop=True)


def preload(bootstrap: str, topic: str, frame) -> int:
    from fraudstream.stream.replay import replay
    from fraudstream.stream.settings import StreamSettings
    from fraudstream.stream.topics import ensure_topics

    ensure_topics(bootstrap, [topic], partitions=1)
    summary = replay(frame, StreamSettings(kafka_bootstrap_servers=bootstrap, transactions_topic=topic),
                     progress=False)
    return summary.sent


def metric_value(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def start_worker(settings, model_dir: Path, log_path: Path, log_level: str = "WARNING") -> subprocess.Popen:
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        env[f"FRAUDSTREAM_WORKER_{name.upper()}"] = str(value)
    env["FRAUDSTREAM_WORKER_MODEL_DIR"] = str(model_dir)
    env["FRAUDSTREAM_WORKER_LOG_LEVEL"] = log_level
    return subprocess.Popen([sys.executable, "-m", "fraudstream.cli.main", "worker"], env=env,
                            stdout=open(log_path, "w"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def worker_rate(bootstrap: str, redis_url: str, model_dir: Path, topic: str, n: int, workdir: Path) -> float:
    """Full worker on the pre-loaded topic: events/s between its first and its n-th decision."""
    from fraudstream.stream.embedded import free_port
    from fraudstream.stream.settings import StreamSettings

    prefix = f"b{uuid.uuid4().hex[:8]}"
    port = free_port()
    settings = StreamSettings(kafka_bootstrap_servers=bootstrap, redis_url=redis_url, transactions_topic=topic,
                              labels_topic=f"{prefix}-labels", decisions_topic=f"{prefix}-decisions",
                              dlq_topic=f"{prefix}-dlq", app_id=f"{prefix}-app", redis_prefix=prefix,
                              metrics_port=port, web_port=0, partitions=1)
    proc = start_worker(settings, model_dir, workdir / "worker-rate.log")
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        first_t = first_n = None
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited; see {workdir / 'worker-rate.log'}")
            try:
                done = metric_value(port, "fraudstream_decisions_total")
            except OSError:
                done = 0.0
            now = time.perf_counter()
            if done > 0 and first_t is None:
                first_t, first_n = now, done
            if done >= n:
                return (done - first_n) / (now - first_t)
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker decided {done:.0f} of {n} events in time")
            time.sleep(POLL_S)
    finally:
        stop(proc)


def noop_rate(bootstrap: str, topic: str, n: int, workdir: Path) -> float:
    result = workdir / "noop.json"
    proc = subprocess.Popen([sys.executable, __file__, "_noop", bootstrap, topic, str(n), str(result)],
                            stdout=open(workdir / "noop.log", "w"), stderr=subprocess.STDOUT)
    try:
        proc.wait(STARTUP_TIMEOUT_S + n / 1000)
    finally:
        stop(proc)
    data = json.loads(result.read_text())
    return data["events"] / data["seconds"]


def latency_run(bootstrap: str, redis_url: str, model_dir: Path, frame, rate: float, workdir: Path) -> np.ndarray:
    """End-to-end latency (ms) of each transaction replayed at ``rate`` tx/s into a running worker."""
    from fraudstream.stream.replay import replay
    from fraudstream.stream.settings import StreamSettings

    prefix = f"l{uuid.uuid4().hex[:8]}"
    settings = StreamSettings(kafka_bootstrap_servers=bootstrap, redis_url=redis_url,
                              transactions_topic=f"{prefix}-transactions", labels_topic=f"{prefix}-labels",
                              decisions_topic=f"{prefix}-decisions", dlq_topic=f"{prefix}-dlq",
                              app_id=f"{prefix}-app", redis_prefix=prefix, metrics_port=0, web_port=0)
    log_path = workdir / "worker-latency.log"
    proc = start_worker(settings, model_dir, log_path, log_level="INFO")
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while "partitions assigned:" not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start; see {log_path}")
            time.sleep(POLL_S)
        replay(frame, settings, rate=rate, progress=False)
        return asyncio.run(_read_latencies(bootstrap, settings.decisions_topic, len(frame)))
    finally:
        stop(proc)


async def _read_latencies(bootstrap: str, topic: str, n: int) -> np.ndarray:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    latencies: list[float] = []
    try:
        deadline = time.monotonic() + 60
        while len(latencies) < n and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for rec in records:
                    data = json.loads(rec.value)
                    arrived_ms = (data["decided_at"] * MS_PER_S) - data["latency_ms"]
                    latencies.append(rec.timestamp - arrived_ms)
    finally:
        await consumer.stop()
    return np.asarray(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000, help="events of the throughput runs")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered rate of the latency run (tx/s)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the latency run (s)")
    parser.add_argument("--model-dir", default=None, help="model root to use (default: train a small one)")
    args = parser.parse_args()

    from fraudstream.stream.embedded import EmbeddedKafka, EmbeddedRedis

    workdir = Path(tempfile.mkdtemp(prefix="fraudstream-bench-"))
    model_dir = Path(args.model_dir) if args.model_dir else train_small_model(workdir / "models")
    n_latency = int(args.rate * args.seconds)
    frame = bench_frame(max(args.events, n_latency))
    with EmbeddedKafka() as kafka, EmbeddedRedis() as redis:
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        sent = preload(kafka.bootstrap_servers, topic, frame.head(args.events))
        noop = noop_rate(kafka.bootstrap_servers, topic, sent, workdir)
        print(f"do-nothing agent: {noop:,.0f} ev/s", flush=True)
        worker = worker_rate(kafka.bootstrap_servers, redis.url, model_dir, topic, sent, workdir)
        print(f"full worker: {worker:,.0f} ev/s", flush=True)
        lat = latency_run(kafka.bootstrap_servers, redis.url, model_dir, frame.head(n_latency), args.rate, workdir)
    p50, p99 = np.percentile(lat, [50, 99]) if lat.size else (float("nan"), float("nan"))
    ratio = worker / noop
    print(f"\nfraudstream worker benchmark ({sent} events, 1 partition; logs in {workdir})\n")
    print(f"| {'what':<42} | {'figure':>12} |")
    print(f"| {'-' * 42} | {'-' * 12} |")
    print(f"| {'Faust do-nothing agent (take 2000/50 ms)':<42} | {noop:>8,.0f} ev/s |")
    print(f"| {'full worker':<42} | {worker:>8,.0f} ev/s |")
    print(f"| {'ratio worker / do-nothing (floor 0.90)':<42} | {ratio:>12.2f} |")
    print(f"| {f'latency p50 at {args.rate:,.0f} tx/s':<42} | {p50:>9.1f} ms |")
    print(f"| {f'latency p99 at {args.rate:,.0f} tx/s (floor 50 ms)':<42} | {p99:>9.1f} ms |")
    print(f"| {'decisions read in the latency run':<42} | {lat.size:>12,d} |")
    ok = ratio >= WORKER_FLOOR_RATIO and p99 <= P99_FLOOR_MS and lat.size == n_latency
    print("\nfloors met" if ok else "\nFLOORS NOT MET")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_noop":
        run_noop_agent(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        main()
