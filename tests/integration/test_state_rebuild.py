"""Redis lost, state rebuilt from Kafka: ``fraudstream state rebuild`` between two runs of a real worker.

A real ``fraudstream worker`` decides the first part of the stream (with its chargeback labels) and is stopped;
the test's Redis keys (its prefix only) are deleted, as a Redis that came back empty; ``fraudstream state rebuild``
rebuilds the state from the topics (a second call is refused: Redis holds a state epoch again; with ``--force`` it
rebuilds over it); the worker starts again and decides the rest of the stream, plus re-sent transactions of the
first part.  Every decision must equal the clean run's (``fraudstream score``, the batch
path: state never lost), and each re-sent transaction must be answered with its original decision, byte for byte.
The figures (``FAULT`` line with ``pytest -s``) are the README's row for "Redis restarted empty".
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
from test_faults import report
from test_worker_stream import assert_parity, decisions_by_id, score_with_cli, wait_for_all
from waiting import wait_for
from worker_process import Worker

pytestmark = pytest.mark.integration

FIRST_PART = 2500
RESENT = 50
LABEL_DELAY_S = 7 * 86_400.0
#: Longest wait (s) for the rebuild command.
REBUILD_TIMEOUT_S = 120.0


def flush_prefix(redis_url: str, prefix: str) -> int:
    """Delete every key of ``prefix`` (and nothing else: other tests share this Redis); how many."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])
        return len(keys)
    finally:
        client.close()


def command_env(settings, model_dir) -> dict[str, str]:
    env = {f"FRAUDSTREAM_WORKER_{name.upper()}": str(value) for name, value in settings.model_dump().items()}
    env["FRAUDSTREAM_WORKER_MODEL_DIR"] = str(model_dir)
    return env


def state_command(settings, model_dir, *args: str) -> subprocess.CompletedProcess:
    """``fraudstream state ARGS`` as the operator runs it: its own process."""
    return subprocess.run([sys.executable, "-m", "fraudstream.cli.main", "state", *args],
                          env={**os.environ, **command_env(settings, model_dir)}, capture_output=True, text=True,
                          timeout=REBUILD_TIMEOUT_S)


def state_command_here(settings, model_dir, *args: str):
    """The same in this process (the models are imported already: seconds less)."""
    from click.testing import CliRunner

    from fraudstream.cli.main import cli

    return CliRunner().invoke(cli, ["state", *args], env=command_env(settings, model_dir))


def epoch_line(summary: str) -> str:
    return next(line for line in summary.splitlines() if line.startswith("state epoch "))


def send_transactions(bootstrap: str, topic: str, rows) -> None:
    """Re-send rows as transaction records (keyed by customer, as the replay sends them)."""
    from kafka import KafkaProducer

    from fraudstream.detectors.schema import Transaction, TransactionBatch

    batch = TransactionBatch.from_frame(rows)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(len(batch)):
        tx = Transaction(int(batch.transaction_id[i]), float(batch.timestamp[i]), int(batch.customer_id[i]),
                         int(batch.terminal_id[i]), float(batch.amount[i]))
        producer.send(topic, value=tx.to_json(), key=str(tx.customer_id).encode())
    producer.flush()
    producer.close()


def test_state_rebuilt_from_kafka_after_redis_lost_decides_like_a_run_that_never_lost_it(
        tiny_bundle, unique_topics, redis_url, read_topic, tmp_path):
    from fraudstream.stream.replay import replay

    rows = tiny_bundle.rows(len(tiny_bundle.frame))
    expected = score_with_cli(rows, tiny_bundle.root, tmp_path)  # the clean run: state never lost
    first, second = rows.iloc[:FIRST_PART], rows.iloc[FIRST_PART:]
    first_ids = {int(t) for t in first["TRANSACTION_ID"]}
    second_ids = {int(t) for t in second["TRANSACTION_ID"]}
    settings = unique_topics.settings(redis_url=redis_url, health_interval_s=0.5, health_timeout_s=1.0,
                                      startup_timeout_s=20.0)
    log = tmp_path / "worker.log"
    worker = Worker(settings, tiny_bundle.root, log)
    try:
        worker.wait_ready()
        summary = replay(first, settings, labels_delay_s=LABEL_DELAY_S, progress=False)
        assert summary.errors == 0
        records = wait_for_all(read_topic, unique_topics.decisions, first_ids)
        original = decisions_by_id(records)
        assert_parity(original, {t: expected[t] for t in first_ids}, tiny_bundle.version)
        worker.stop()

        deleted = flush_prefix(redis_url, settings.redis_prefix)  # Redis came back empty
        assert deleted > FIRST_PART
        started = time.monotonic()
        done = state_command(settings, tiny_bundle.root, "rebuild")
        rebuild_s = time.monotonic() - started
        assert done.returncode == 0, done.stdout + done.stderr
        print(done.stdout)
        assert "state rebuilt" in done.stdout and "Review items were not rebuilt" in done.stdout
        again = state_command_here(settings, tiny_bundle.root, "rebuild")  # the state exists now: refused
        assert again.exit_code == 2 and "refused" in again.stderr and "--force" in again.stderr, again.output
        forced = state_command_here(settings, tiny_bundle.root, "rebuild", "--force")  # over it: the same again
        assert forced.exit_code == 0, forced.output
        assert epoch_line(forced.stdout) != epoch_line(done.stdout)

        # re-sent in event-time order, as a producer retries (shuffled old records at a partition's head would be
        # outliers to the worker's event-time rules: too early, dead-lettered)
        resent = first.sample(RESENT, random_state=5).sort_values(["TX_DATETIME", "TRANSACTION_ID"])
        send_transactions(unique_topics.bootstrap, unique_topics.transactions, resent)
        worker = Worker(settings, tiny_bundle.root, log)
        worker.wait_ready(count=2)
        summary = replay(second, settings, labels_delay_s=LABEL_DELAY_S, progress=False)
        assert summary.errors == 0
        wait_for_all(read_topic, unique_topics.decisions, first_ids | second_ids)
        # every transaction decided once, and each re-sent one answered once more
        records = wait_for(f"{len(expected) + RESENT} decision records", lambda: (
            lambda got: got if len(got) >= len(expected) + RESENT else None)(
                read_topic(unique_topics.decisions, len(expected) + RESENT, timeout_s=5)), 60.0, (log,))
        by_id = decisions_by_id(records)
        assert worker.proc.poll() is None, worker.text()[-3000:]
    finally:
        worker.stop()

    differ = [t for t in second_ids if t in by_id and
              {(json.loads(v)["decision"], round(json.loads(v)["risk"], 6)) for v in by_id[t]}
              != {(expected[t][0], round(expected[t][1], 6))}]
    resent_ids = {int(t) for t in resent["TRANSACTION_ID"]}
    resent_same = sum(by_id[t] == original[t] for t in resent_ids)
    resent_records = sum(json.loads(r.value)["transaction_id"] in resent_ids for r in records)
    report("redis restarted empty, state rebuilt", transactions=len(expected), before=len(first_ids),
           after=len(second_ids), after_equal=len(second_ids) - len(differ), after_differing=len(differ),
           resent=len(resent_ids), resent_answered_with_original=resent_same, rebuild_s=round(rebuild_s, 1),
           rebuild_in_process_s=float(re.search(r"state rebuilt in ([0-9.]+) s", done.stdout).group(1)),
           doubled=sum(len(v) > 1 for v in by_id.values()), lost=len(set(expected) - set(by_id)))
    assert_parity(by_id, expected, tiny_bundle.version)  # every decision, before and after, the clean run's
    assert not differ
    assert resent_same == len(resent_ids) and resent_records == 2 * len(resent_ids)
    assert len(records) == len(expected) + RESENT
