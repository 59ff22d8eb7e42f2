"""Faults a worker must survive or report, against a real broker and Redis of the test's own (so freezing or
restarting them touches no other test): Redis frozen, Redis restarted empty, broker restarted empty, bad input on
both topics.  Each test is bounded (about a minute on a loaded 2-core machine) and reports its figures (events
lost, doubled, time to recover) as one ``FAULT`` line on stdout (``pytest -s``), the source of the README's table.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time

import pytest
import topic_records
from test_worker_stream import assert_parity, decisions_by_id, score_with_cli
from waiting import wait_for
from worker_process import Worker, metric_samples

from fraudstream.stream.embedded import EmbeddedKafka, EmbeddedProcess, EmbeddedRedis, free_port, stop_process_group
from fraudstream.stream.topics import ensure_topics

pytestmark = pytest.mark.integration

N_ROWS = 2000
REPLAY_RATE_TX_S = 400.0
LABEL_DELAY_S = 7 * 86_400.0
FREEZE_S = 10.0
#: Longest wait (s) for decisions, a gauge, an exit.
WAIT_S = 90.0


def report(fault: str, **figures: object) -> None:
    """One line of figures for the README's table (and a JSON line in $FRAUDSTREAM_FAULT_REPORT when set)."""
    line = json.dumps({"fault": fault, **figures}, sort_keys=True)
    print(f"FAULT {line}")
    path = os.environ.get("FRAUDSTREAM_FAULT_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(line + "\n")


@pytest.fixture(scope="module")
def clean_run(tiny_bundle, tmp_path_factory):
    """(model root, rows, expected {id: (decision, risk)} of the batch path, model version)."""
    rows = tiny_bundle.rows(N_ROWS)
    return tiny_bundle.root, rows, score_with_cli(rows, tiny_bundle.root, tmp_path_factory.mktemp("clean")), \
        tiny_bundle.version


def restart_on_same_port(service: EmbeddedProcess) -> None:
    """Kill the service's process and start a new, empty one on the same port (clients reconnect to it)."""
    assert service.process is not None and service.port is not None and service.log_path is not None
    stop_process_group(service.process, signal.SIGKILL, grace_s=5.0)
    service._spawn(service.command(service.port, service.log_path.parent))
    service._wait_ready(last_attempt=True)


def read_records(bootstrap: str, topic: str, expected: int, timeout_s: float = 10.0) -> list:
    """Records of ``topic`` from the start, or none when the broker has no such topic (it may have lost it)."""
    return topic_records.read_records(bootstrap, topic, expected, timeout_s, wait_for_topic=False)


def all_decided(bootstrap: str, topic: str, ids: set[int]):
    """A check for ``wait_for``: the decision records once every id has one, else None."""
    def check():
        records = read_records(bootstrap, topic, len(ids), timeout_s=3.0)
        return records if ids <= set(decisions_by_id(records)) else None
    return check


def gauge(port: int, name: str) -> float | None:
    try:
        samples = metric_samples(port, name)
    except OSError:
        return None
    return next(iter(samples.values()), None)


def own_topics(bootstrap: str, prefix: str, partitions: int = 3) -> dict[str, str]:
    names = {k: f"{prefix}-{k}" for k in ("transactions", "labels", "decisions", "dlq")}
    ensure_topics(bootstrap, list(names.values()), partitions)
    return names


def settings_for(bootstrap: str, redis_url: str, prefix: str, names: dict[str, str], **overrides):
    from fraudstream.stream.settings import StreamSettings

    values = dict(kafka_bootstrap_servers=bootstrap, redis_url=redis_url, transactions_topic=names["transactions"],
                  labels_topic=names["labels"], decisions_topic=names["decisions"], dlq_topic=names["dlq"],
                  app_id=f"{prefix}-app", redis_prefix=prefix, partitions=3, metrics_port=0,
                  health_interval_s=0.5, health_timeout_s=1.0, startup_timeout_s=20.0)
    values.update(overrides)
    return StreamSettings(**values)


def replay_in_thread(rows, settings) -> tuple[threading.Thread, dict]:
    from fraudstream.stream.replay import replay

    outcome: dict = {}

    def run():
        try:
            outcome["summary"] = replay(rows, settings, rate=REPLAY_RATE_TX_S, labels_delay_s=LABEL_DELAY_S,
                                        progress=False)
        except Exception as exc:  # recorded for the test to judge
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def exited(worker: Worker):
    return lambda: worker.proc.poll() is not None


def test_redis_frozen_10_s_changes_no_decision_and_is_shown(clean_run, kafka_bootstrap, tmp_path):
    import uuid

    root, rows, expected, version = clean_run
    prefix = f"f{uuid.uuid4().hex[:10]}"
    with EmbeddedRedis() as redis_server:
        names = own_topics(kafka_bootstrap, prefix)
        settings = settings_for(kafka_bootstrap, redis_server.url, prefix, names)
        port = free_port()
        log = tmp_path / "worker.log"
        worker = Worker(settings, root, log, metrics_port=port)
        try:
            worker.wait_ready()
            sender, outcome = replay_in_thread(rows, settings)
            wait_for("first decisions", lambda: read_records(kafka_bootstrap, names["decisions"], 1, 2.0),
                     WAIT_S, (log,))
            os.kill(redis_server.pid, signal.SIGSTOP)
            frozen_at = time.monotonic()
            try:
                wait_for("fraudstream_redis_up = 0", lambda: gauge(port, "fraudstream_redis_up") == 0, FREEZE_S,
                         (log,))
                lag_during = wait_for("lag growing during the freeze", lambda: max(
                    metric_samples(port, "fraudstream_consumer_lag_messages").values(), default=0), FREEZE_S,
                    (log,))
                time.sleep(max(0.0, FREEZE_S - (time.monotonic() - frozen_at)))
            finally:
                os.kill(redis_server.pid, signal.SIGCONT)
            resumed_at = time.monotonic()
            sender.join(WAIT_S)
            assert "error" not in outcome and outcome["summary"].errors == 0, outcome
            records = wait_for("every decision", all_decided(kafka_bootstrap, names["decisions"], set(expected)),
                               WAIT_S, (log,))
            recovered_s = time.monotonic() - resumed_at
            by_id = decisions_by_id(records)
            assert_parity(by_id, expected, version)
            wait_for("fraudstream_redis_up = 1", lambda: gauge(port, "fraudstream_redis_up") == 1, WAIT_S, (log,))
            assert worker.proc.poll() is None
            assert "Traceback" not in worker.text(), "a frozen Redis is no reason for a traceback"
            report("redis frozen (SIGSTOP) 10 s", transactions=len(expected), lost=len(set(expected) - set(by_id)),
                   doubled=sum(len(v) > 1 for v in by_id.values()), resent_identical=len(records) - len(by_id),
                   recover_s=round(recovered_s, 1), lag_seen_during_freeze=lag_during)
        finally:
            worker.stop()


def test_redis_restarted_empty_stops_the_worker_with_exit_4_before_it_decides_on_empty_state(
        clean_run, kafka_bootstrap, tmp_path):
    import uuid

    root, rows, expected, version = clean_run
    prefix = f"f{uuid.uuid4().hex[:10]}"
    half = rows.iloc[:N_ROWS // 2]
    half_ids = set(int(t) for t in half["TRANSACTION_ID"])
    with EmbeddedRedis() as redis_server:
        names = own_topics(kafka_bootstrap, prefix)
        settings = settings_for(kafka_bootstrap, redis_server.url, prefix, names)
        log = tmp_path / "worker.log"
        worker = Worker(settings, root, log)
        try:
            worker.wait_ready()
            sender, outcome = replay_in_thread(half, settings)
            sender.join(WAIT_S)
            wait_for("the first half decided", all_decided(kafka_bootstrap, names["decisions"], half_ids), WAIT_S,
                     (log,))
            restart_on_same_port(redis_server)
            restarted_at = time.monotonic()
            sender, outcome = replay_in_thread(rows.iloc[N_ROWS // 2:], settings)  # traffic goes on
            wait_for("the worker to stop", exited(worker), WAIT_S, (log,))
            detected_s = time.monotonic() - restarted_at
            sender.join(WAIT_S)
            assert worker.proc.returncode == 4, worker.text()[-3000:]
            text = worker.text()
            assert "state lost" in text and "accept-empty" in text
            records = read_records(kafka_bootstrap, names["decisions"], len(expected), timeout_s=5.0)
            by_id = decisions_by_id(records)
            # nothing decided on the empty state: every decision there is the clean run's
            assert_parity(by_id, {t: expected[t] for t in by_id}, version)
            assert half_ids <= set(by_id)
            decided_after = len(set(by_id) - half_ids)
            assert decided_after == 0, f"{decided_after} transactions were decided on the emptied Redis"
            worker.log.close()
            again = Worker(settings, root, log)  # a restart is refused at start, with the same message
            wait_for("the restarted worker to refuse", exited(again), WAIT_S, (log,))
            assert again.proc.returncode == 4
            report("redis restarted empty", transactions=len(expected), decided_before=len(half_ids),
                   decided_on_empty_state=decided_after,
                   detected_s=round(detected_s, 1), exit_code=4)
        finally:
            worker.stop()


def test_a_broker_restarted_empty_stops_the_worker_loudly_and_nothing_is_doubled(clean_run, redis_url, tmp_path):
    import uuid

    from fraudstream.stream.broker.replay_producer import TopicVanishedError

    root, rows, expected, version = clean_run
    prefix = f"f{uuid.uuid4().hex[:10]}"
    first = rows.iloc[:N_ROWS // 2]
    first_ids = set(int(t) for t in first["TRANSACTION_ID"])
    with EmbeddedKafka() as broker:
        names = own_topics(broker.bootstrap_servers, prefix)
        settings = settings_for(broker.bootstrap_servers, redis_url, prefix, names)
        log = tmp_path / "worker.log"
        worker = Worker(settings, root, log)
        try:
            worker.wait_ready()
            sender, outcome = replay_in_thread(first, settings)
            sender.join(WAIT_S)
            records = wait_for("the first half decided",
                               all_decided(broker.bootstrap_servers, names["decisions"], first_ids), WAIT_S, (log,))
            before = decisions_by_id(records)
            assert_parity(before, {t: expected[t] for t in first_ids}, version)
            restart_on_same_port(broker)
            restarted_at = time.monotonic()
            sender, outcome = replay_in_thread(rows.iloc[N_ROWS // 2:], settings)  # the producer goes on
            wait_for("the worker to stop", exited(worker), WAIT_S, (log,))
            detected_s = time.monotonic() - restarted_at
            sender.join(WAIT_S)
            assert worker.proc.returncode == 5, worker.text()[-3000:]
            assert "lost what this worker already processed" in worker.text()
            error = outcome.get("error")
            assert error is None or isinstance(error, TopicVanishedError), repr(error)  # never a TypeError
            after = decisions_by_id(read_records(broker.bootstrap_servers, names["decisions"], 1, timeout_s=3.0))
            doubled = sum(len(before.get(t, set()) | after.get(t, set())) > 1 for t in set(before) | set(after))
            assert doubled == 0
            worker.log.close()
            again = Worker(settings, root, log)  # start-up refuses the emptied broker
            wait_for("the restarted worker to refuse", exited(again), WAIT_S, (log,))
            assert again.proc.returncode == 5, again.text()[-3000:]
            report("broker restarted empty", transactions=len(first_ids),
                   lost_before_restart=len(first_ids - set(before)), doubled=doubled,
                   detected_s=round(detected_s, 1), exit_code=5,
                   replay_after_restart="TopicVanishedError" if error is not None else "sent (topics auto-created)")
        finally:
            worker.stop()


BAD_TRANSACTIONS = [
    b"{not json", b"\xff\xfe not utf-8", b"[]", b"null",
    json.dumps({"transaction_id": 9_000_001, "customer_id": 1, "terminal_id": 2, "amount": 5.0}).encode(),
    json.dumps({"transaction_id": 9_000_002, "timestamp": "9999-12-31T23:59:59Z", "customer_id": 1,
                "terminal_id": 2, "amount": 5.0}).encode(),
    json.dumps({"transaction_id": 9_000_003, "timestamp": 1_522_600_000.0, "customer_id": "x", "terminal_id": 2,
                "amount": 5.0}).encode(),
    b'{"transaction_id": 9000004, "timestamp": 1522600000.0, "customer_id": 1, "terminal_id": 2, "amount": NaN}',
    json.dumps({"transaction_id": 9_000_005, "timestamp": 1_522_600_000.0, "customer_id": 1, "terminal_id": 2,
                "amount": -3.0}).encode(),
    json.dumps({"transaction_id": 9_000_006, "timestamp": 1_522_600_000.0, "customer_id": 1, "terminal_id": 2,
                "amount": 1e300}).encode(),
    json.dumps({"transaction_id": 9_000_007, "timestamp": 1_522_600_000.0, "customer_id": None,
                "terminal_id": 2, "amount": 5.0}).encode(),
    json.dumps({"transaction_id": 9_000_008, "timestamp": 1_522_600_000.0, "customer_id": 1,
                "terminal_id": "7" * 200_000, "amount": 5.0}).encode(),
]
BAD_LABELS = [b"{not json", b"\xff", json.dumps({"transaction_id": 1}).encode(), b"null",
              json.dumps({"transaction_id": 5, "terminal_id": 2, "customer_id": 1, "timestamp": "soon",
                          "fraud": True, "known_at": 1.0}).encode()]


def test_bad_events_on_both_topics_mixed_into_valid_traffic_hold_nothing_and_each_reaches_the_dlq(
        clean_run, kafka_bootstrap, redis_url, tmp_path):
    import uuid

    from kafka import KafkaProducer

    root, rows, expected, version = clean_run
    prefix = f"f{uuid.uuid4().hex[:10]}"
    names = own_topics(kafka_bootstrap, prefix)
    settings = settings_for(kafka_bootstrap, redis_url, prefix, names)
    log = tmp_path / "worker.log"
    worker = Worker(settings, root, log)
    try:
        worker.wait_ready()
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        for p in range(settings.partitions):  # a bad event at the head of every partition of both topics
            for value in BAD_TRANSACTIONS[:4]:
                producer.send(names["transactions"], value=value, partition=p)
            producer.send(names["labels"], value=BAD_LABELS[p % len(BAD_LABELS)], partition=p)
        producer.flush()
        sender, outcome = replay_in_thread(rows, settings)
        time.sleep(1.0)
        for i, value in enumerate(BAD_TRANSACTIONS[4:]):  # and more in the middle of the stream
            producer.send(names["transactions"], value=value, partition=i % settings.partitions)
        for value in BAD_LABELS[settings.partitions:]:
            producer.send(names["labels"], value=value, partition=0)
        producer.flush()
        producer.close()
        sender.join(WAIT_S)
        records = wait_for("every valid transaction decided",
                           all_decided(kafka_bootstrap, names["decisions"], set(expected)), WAIT_S, (log,))
        by_id = decisions_by_id(records)
        assert_parity(by_id, expected, version)
        bad_total = settings.partitions * 4 + len(BAD_TRANSACTIONS[4:]) + len(BAD_LABELS)
        letters = wait_for("every bad event in the DLQ", lambda: (
            lambda got: got if len(got) >= bad_total else None)(read_records(kafka_bootstrap, names["dlq"],
                                                                              bad_total, 3.0)), WAIT_S, (log,))
        decoded = [json.loads(r.value) for r in letters]
        assert len(decoded) == bad_total
        assert all(d["reason_code"] and d["reason"] for d in decoded)
        originals = sorted(base64.b64decode(d["original_b64"]) for d in decoded)
        sent_bad = sorted(BAD_TRANSACTIONS[:4] * settings.partitions + BAD_TRANSACTIONS[4:] + BAD_LABELS)
        assert originals == sent_bad
        assert worker.proc.poll() is None, "the worker died on bad input"
        reasons = sorted({d["reason_code"] for d in decoded})
        report("bad input on both topics", valid=len(expected), bad=bad_total, valid_decided_once=len(by_id),
               lost=len(set(expected) - set(by_id)), doubled=sum(len(v) > 1 for v in by_id.values()),
               dead_lettered=len(decoded), reasons=reasons)
    finally:
        worker.stop()
