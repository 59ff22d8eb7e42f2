"""The stream worker as a subprocess (``fraudstream worker``) against the real broker and Redis.

A small model is trained once; a few thousand simulated transactions with their labels are replayed; decisions
are read back from the ``decisions`` topic and compared with ``fraudstream score`` (the batch path) run on the
same rows written to a file.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path

import pytest
from worker_process import READY_LINE, STARTUP_TIMEOUT_S, Worker, metric_samples

pytestmark = pytest.mark.integration

N_ROWS = 3000
REPLAY_RATE_TX_S = 500.0


def score_with_cli(rows, root: Path, workdir: Path) -> dict[int, tuple[str, float]]:
    """``fraudstream score`` on exactly these rows: {transaction id: (decision, risk)}."""
    import pandas as pd
    from click.testing import CliRunner

    from fraudstream.cli.main import cli

    data, out = workdir / "replayed.parquet", workdir / "scores.parquet"
    rows.to_parquet(data, index=False)
    start = rows["TX_DATETIME"].min()
    end = rows["TX_DATETIME"].max() + pd.Timedelta(seconds=1)
    result = CliRunner().invoke(cli, ["score", str(data), "--model", str(root), "--from", str(start),
                                      "--to", str(end), "--out", str(out)])
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    assert len(scores) == len(rows)
    return {int(t): (str(d), float(r)) for t, d, r in zip(scores["TRANSACTION_ID"], scores["DECISION"],
                                                           scores["RISK"])}


@pytest.fixture(scope="module")
def trained(tiny_bundle, tmp_path_factory):
    """(model root, the replayed rows in time order, expected {id: (decision name, risk)}, model version)."""
    rows = tiny_bundle.rows(N_ROWS)
    expected = score_with_cli(rows, tiny_bundle.root, tmp_path_factory.mktemp("scores"))
    return tiny_bundle.root, rows, expected, tiny_bundle.version


def assigned_partitions(port: int, topic: str) -> set[str]:
    """Partitions of ``topic`` a worker reports a consumer lag for (its current assignment)."""
    return {labels for labels in metric_samples(port, "fraudstream_consumer_lag_messages")
            if f'topic="{topic}"' in labels}


def decisions_by_id(records) -> dict[int, set[bytes]]:
    out: dict[int, set[bytes]] = {}
    for rec in records:
        data = json.loads(rec.value)
        out.setdefault(data["transaction_id"], set()).add(rec.value)
    return out


def wait_for_all(read_topic, topic: str, ids: set[int], timeout_s: float = 90.0):
    """Read the topic until every id has a decision (or timeout); returns the records."""
    deadline = time.monotonic() + timeout_s
    records = []
    while time.monotonic() < deadline:
        records = read_topic(topic, len(ids), timeout_s=5)
        if ids <= set(decisions_by_id(records)):
            return records
        time.sleep(0.5)
    return records


def assert_parity(by_id: dict[int, set[bytes]], expected, version):
    missing, extra = len(set(expected) - set(by_id)), len(set(by_id) - set(expected))
    assert set(by_id) == set(expected), f"missing {missing}, extra {extra}"
    wrong = []
    for tid, values in by_id.items():
        assert len(values) == 1, f"transaction {tid} has {len(values)} distinct decisions"
        data = json.loads(next(iter(values)))
        if data["decision"] != expected[tid][0] or abs(data["risk"] - expected[tid][1]) >= 1e-6:
            wrong.append((tid, expected[tid], data))
        assert data["model_version"] == version
    assert not wrong, f"{len(wrong)} decisions differ from the batch path, e.g. {wrong[:3]}"


def where_missing(read_topic, topics, missing: set[int], log_path: Path) -> str:
    """Where the undecided transactions are: their partitions and offsets, and any dead letters of theirs."""
    placed = {}
    for rec in read_topic(topics.transactions, 1, timeout_s=10):
        tid = json.loads(rec.value)["transaction_id"]
        if tid in missing:
            placed.setdefault(rec.partition, []).append(rec.offset)
    reasons: dict[str, int] = {}
    for rec in read_topic(topics.dlq, 1, timeout_s=5):
        letter = json.loads(rec.value)
        try:
            tid = json.loads(base64.b64decode(letter["original_b64"]))["transaction_id"]
        except (ValueError, KeyError, TypeError):
            continue
        if tid in missing:
            reasons[letter["reason_code"]] = reasons.get(letter["reason_code"], 0) + 1
    spans = {p: (min(o), max(o), len(o)) for p, o in placed.items()}
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
    return (f"{len(missing)} transactions never decided; by partition (first offset, last offset, count): {spans}; "
            f"their dead letters by reason: {reasons}; worker log tail:\n{tail}")


def review_ids(redis_url: str, prefix: str) -> set[int]:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return {int(m) for m in client.zrange(f"{prefix}:review:pending", 0, -1)}
    finally:
        client.close()


def settled_review_ids(redis_url: str, prefix: str, ids: set[int]) -> set[int]:
    """Those of ``ids`` whose review item a chargeback label resolved."""
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return {t for t in ids if client.hmget(f"{prefix}:review:item:{t}", "status", "source")
                == ["resolved", "chargeback"]}
    finally:
        client.close()


def start_two_workers(settings, root: Path, tmp_path: Path, names: tuple[str, str]
                      ) -> tuple[tuple[Worker, Worker], list[int]]:
    """Two workers of one group (logs ``<name>.log``) and their metrics ports, the second started once the first
    has its partitions; returns once the first's partitions were assigned again (the group is stable).  The caller
    stops them."""
    from fraudstream.stream.embedded import free_port

    ports = [free_port(), free_port()]
    first = Worker(settings, root, tmp_path / f"{names[0]}.log", metrics_port=ports[0])
    second = None
    try:
        first.wait_ready()
        second = Worker(settings, root, tmp_path / f"{names[1]}.log", metrics_port=ports[1])
        second.wait_ready()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while first.text().count(READY_LINE) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # the first worker's partitions are re-assigned when the second joins
    except BaseException:
        first.stop()
        if second is not None:
            second.stop()
        raise
    return (first, second), ports


def send_raw(bootstrap: str, topic: str, values: list[bytes]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for value in values:
        producer.send(topic, value=value, key=b"bad")
    producer.flush()
    producer.close()


def test_worker_decides_every_transaction_like_the_batch_path_and_dead_letters_bad_events(
        trained, unique_topics, redis_url, read_topic, tmp_path):
    from fraudstream.stream.embedded import free_port
    from fraudstream.stream.replay import replay

    root, rows, expected, version = trained
    settings = unique_topics.settings(redis_url=redis_url)
    port = free_port()
    worker = Worker(settings, root, tmp_path / "worker.log", metrics_port=port)
    try:
        worker.wait_ready()
        bad = [b"{not json", json.dumps({"transaction_id": 5, "timestamp": 1.0, "customer_id": 1,
                                         "terminal_id": 2}).encode(),
               json.dumps({"transaction_id": 6, "timestamp": 1.0, "customer_id": 1, "terminal_id": 2,
                           "amount": -4.0}).encode()]
        send_raw(unique_topics.bootstrap, unique_topics.transactions, bad)
        delay = 7 * 86_400.0
        summary = replay(rows, settings, rate=REPLAY_RATE_TX_S, labels_delay_s=delay, progress=False)
        assert summary.sent == N_ROWS and summary.errors == 0
        records = wait_for_all(read_topic, unique_topics.decisions, set(expected))
        by_id = decisions_by_id(records)
        assert_parity(by_id, expected, version)
        assert len(records) == N_ROWS, "a transaction was decided more than once"

        letters = [json.loads(r.value) for r in read_topic(unique_topics.dlq, 3)]
        assert sorted(d["reason_code"] for d in letters) == ["invalid_field", "invalid_json", "missing_field"]
        assert {d["field"] for d in letters} == {None, "amount"}
        import base64
        assert sorted(base64.b64decode(d["original_b64"]) for d in letters) == sorted(bad)
        assert worker.proc.poll() is None, "the worker died on bad input"

        reviews = {t for t, (d, _) in expected.items() if d == "REVIEW"}
        pending = review_ids(redis_url, settings.redis_prefix)
        settled = settled_review_ids(redis_url, settings.redis_prefix, reviews)
        assert pending | settled == reviews and not pending & settled  # a chargeback settles a pending item
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("fraudstream_decisions_total{"))
        assert total == N_ROWS
        assert 'fraudstream_dlq_total{reason="invalid_json"} 1.0' in text
        assert f'fraudstream_model_info{{version="{version}"}} 1.0' in text
    finally:
        worker.stop()


#: kill -9 this many times, each while the worker works through a backlog sent while it was down.
KILLS = 5
#: Transactions replayed around the kills: more than the tiny bundle's own history holds, so they are simulated
#: for more customers (the model scores any rows).
KILL_ROWS = 20_000


@pytest.fixture(scope="module")
def kill_rows(tiny_bundle, tmp_path_factory):
    """(model root, KILL_ROWS transactions in time order, expected {id: (decision name, risk)}, model version)."""
    from fraudstream.training.simulator import SimulationConfig, simulate

    frame = simulate(SimulationConfig(n_customers=400, n_terminals=800, nb_days=30, seed=12))
    rows = frame.sort_values(["TX_DATETIME", "TRANSACTION_ID"]).head(KILL_ROWS).reset_index(drop=True)
    assert len(rows) == KILL_ROWS
    expected = score_with_cli(rows, tiny_bundle.root, tmp_path_factory.mktemp("kill-scores"))
    return tiny_bundle.root, rows, expected, tiny_bundle.version
#: After each restart the worker is killed this long (s) after it reports its partitions: at once, mid-batch, later.
KILL_DELAYS_S = (0.0, 0.3, 0.8, 0.1, 1.5)


def test_kill_9_five_times_with_a_backlog_loses_and_duplicates_nothing(
        kill_rows, unique_topics, redis_url, read_topic, tmp_path):
    import numpy as np

    from fraudstream.stream.replay import replay

    root, rows, expected, version = kill_rows
    # small batches, so that kills land mid-backlog
    settings = unique_topics.settings(redis_url=redis_url, batch_size=100)
    log_path = tmp_path / "worker.log"
    chunks = np.array_split(np.arange(len(rows)), KILLS + 1)
    worker = None
    decided_at_kill, sent = [], 0
    started = time.monotonic()
    try:
        for k in range(KILLS):
            # the worker is down: this chunk is a backlog when it comes back
            summary = replay(rows.iloc[chunks[k]], settings, labels_delay_s=7 * 86_400.0, progress=False)
            assert summary.errors == 0
            sent += summary.sent
            worker = Worker(settings, root, log_path)
            worker.wait_ready(count=k + 1)
            time.sleep(KILL_DELAYS_S[k])
            worker.proc.kill()  # SIGKILL: no clean shutdown, no final commit
            worker.proc.wait(10)
            worker.log.close()
            decided_at_kill.append(len(decisions_by_id(read_topic(unique_topics.decisions, 1, timeout_s=3))))
        summary = replay(rows.iloc[chunks[KILLS]], settings, labels_delay_s=7 * 86_400.0, progress=False)
        sent += summary.sent
        assert sent == len(rows)
        worker = Worker(settings, root, log_path)
        worker.wait_ready(count=KILLS + 1)
        records = wait_for_all(read_topic, unique_topics.decisions, set(expected))
        recovered_s = time.monotonic() - started
        by_id = decisions_by_id(records)
        missing = set(expected) - set(by_id)
        assert not missing, where_missing(read_topic, unique_topics, missing, log_path)
        assert_parity(by_id, expected, version)  # exactly one distinct decision per transaction, the clean run's
        assert any(d < s for d, s in zip(decided_at_kill, np.cumsum([len(c) for c in chunks[:KILLS]]))), \
            f"no kill landed while a backlog was pending: decided at each kill {decided_at_kill}"
        reviews = {t for t, (d, _) in expected.items() if d == "REVIEW"}
        pending = review_ids(redis_url, settings.redis_prefix)
        settled = settled_review_ids(redis_url, settings.redis_prefix, reviews)
        assert pending | settled == reviews and not pending & settled  # a chargeback settles a pending item
        print("FAULT " + json.dumps({"fault": f"kill -9 x{KILLS} with a backlog", "transactions": len(expected),
                                     "lost": len(set(expected) - set(by_id)),
                                     "doubled": sum(len(v) > 1 for v in by_id.values()),
                                     "resent_identical": len(records) - len(by_id),
                                     "decided_at_each_kill": decided_at_kill,
                                     "whole_run_s": round(recovered_s, 1)}, sort_keys=True))
    finally:
        if worker is not None:
            worker.stop()


def test_two_workers_in_one_group_split_partitions_and_change_no_decision(
        trained, unique_topics, redis_url, read_topic, tmp_path):
    from fraudstream.stream.replay import replay

    root, rows, expected, version = trained
    settings = unique_topics.settings(redis_url=redis_url)
    (first, second), ports = start_two_workers(settings, root, tmp_path, ("first", "second"))
    try:
        replay(rows, settings, rate=REPLAY_RATE_TX_S, labels_delay_s=7 * 86_400.0, progress=False)
        records = wait_for_all(read_topic, unique_topics.decisions, set(expected))
        assert_parity(decisions_by_id(records), expected, version)

        decided = [sum(metric_samples(port, "fraudstream_decisions_total").values()) for port in ports]
        assert all(n > 0 for n in decided) and sum(decided) == N_ROWS, decided
        tx_first, tx_second = (assigned_partitions(port, unique_topics.transactions) for port in ports)
        assert tx_first and tx_second and not tx_first & tx_second, (tx_first, tx_second)
        assert len(tx_first | tx_second) == settings.partitions
        labels_first, labels_second = (assigned_partitions(port, unique_topics.labels) for port in ports)
        assert len(labels_first) == len(labels_second) == settings.partitions, "every worker reads every label"
    finally:
        first.stop()
        second.stop()


def test_kill_9_of_one_of_two_workers_mid_stream_loses_and_duplicates_nothing(
        trained, unique_topics, redis_url, read_topic, tmp_path):
    """Two workers share the partitions; one is killed (SIGKILL) while transactions flow.  The group hands its
    partitions to the survivor, which resumes at the committed offsets: every transaction decided, once, as the
    clean run decided it."""
    import threading

    from fraudstream.stream.replay import replay

    root, rows, expected, version = trained
    settings = unique_topics.settings(redis_url=redis_url, batch_size=100)
    started = time.monotonic()
    (survivor, victim), ports = start_two_workers(settings, root, tmp_path, ("survivor", "victim"))
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        victim_partitions: set[str] = set()
        while not victim_partitions and time.monotonic() < deadline:  # its lag gauge names them once it fetched
            victim_partitions = assigned_partitions(ports[1], unique_topics.transactions)
            time.sleep(0.1)
        assert victim_partitions, "the second worker got no partition"
        sent = threading.Thread(target=replay, args=(rows, settings), daemon=True,
                                kwargs=dict(rate=REPLAY_RATE_TX_S, labels_delay_s=7 * 86_400.0, progress=False))
        sent.start()
        time.sleep(N_ROWS / REPLAY_RATE_TX_S / 3)  # a third of the stream is out
        victim_decided = sum(metric_samples(ports[1], "fraudstream_decisions_total").values())
        victim.proc.kill()
        victim.proc.wait(10)
        killed_at = time.monotonic()
        sent.join(120)
        records = wait_for_all(read_topic, unique_topics.decisions, set(expected), timeout_s=120)
        recovered_s = time.monotonic() - killed_at
        by_id = decisions_by_id(records)
        missing = set(expected) - set(by_id)
        assert not missing, where_missing(read_topic, unique_topics, missing, tmp_path / "survivor.log")
        assert_parity(by_id, expected, version)
        assert victim_decided > 0, "the killed worker had decided nothing: the kill proved nothing"
        assert assigned_partitions(ports[0], unique_topics.transactions) >= victim_partitions
        print("FAULT " + json.dumps({"fault": "kill -9 of one of two workers", "transactions": len(expected),
                                     "victim_decided_before_kill": victim_decided,
                                     "lost": len(missing), "doubled": sum(len(v) > 1 for v in by_id.values()),
                                     "resent_identical": len(records) - len(by_id),
                                     "all_decided_s_after_kill": round(recovered_s, 1),
                                     "whole_run_s": round(time.monotonic() - started, 1)}, sort_keys=True))
    finally:
        survivor.stop()
        victim.stop()
