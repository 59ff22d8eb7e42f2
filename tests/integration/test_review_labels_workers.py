"""Verdicts given through the review service's JSON API reach every worker: two workers in one consumer group,
the review service, the real broker and Redis.

Two cards send a burst of transactions (the burst rule sends the later ones to REVIEW).  An analyst logs in
through ``POST /api/login``, claims each case with ``POST /api/claim`` and gives verdicts with
``POST /api/cases/<card>/verdict`` (one item legit, the rest of both cases fraud).  The labels go to the labels
topic (source analyst, ``known_at`` = verdict time).  Then one transaction of each card goes to a partition of
each worker: each worker reads every label partition before it scores (its ``labels_total`` plus
``duplicate_labels_total`` count every verdict: learned into the shared terminal state by one, found there by
the other; its label lag is 0), the terminal state holds the fraud labels, and each worker BLOCKs its card's
transaction by the live block list.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
from waiting import wait_for
from worker_process import READY_LINE, STARTUP_TIMEOUT_S, Worker, metric_samples

pytestmark = pytest.mark.integration

PASSWORD = "analyst password 42"
CARDS = (910_001, 910_002)
#: Transactions per card (the burst rule sends the 20th and later ones of the hour to REVIEW).
BURST = 23
WAIT_S = 60.0
BLOCK_REASON = "rule:live_block_list"
PARTITION_LABEL = re.compile(r'partition="(\d+)"')


def review_env(topics, redis_url: str, page_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(FRAUDSTREAM_REVIEW_REDIS_URL=redis_url, FRAUDSTREAM_REVIEW_REDIS_PREFIX=topics.prefix,
               FRAUDSTREAM_REVIEW_KAFKA_BOOTSTRAP_SERVERS=topics.bootstrap,
               FRAUDSTREAM_REVIEW_LABELS_TOPIC=topics.labels, FRAUDSTREAM_REVIEW_PAGE_PORT=str(page_port),
               FRAUDSTREAM_REVIEW_INGEST_EVERY_S="0.2", FRAUDSTREAM_REVIEW_PUBLISH_EVERY_S="0.2",
               FRAUDSTREAM_REVIEW_PASSWORD_TIME_COST="1", FRAUDSTREAM_REVIEW_PASSWORD_MEMORY_KIB="8192")
    return env


def produce(bootstrap: str, topic: str, events: list[dict], partitions: list[int] | None = None) -> None:
    """Send transactions keyed by card (on ``partitions[i]`` when given)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i, event in enumerate(events):
        producer.send(topic, key=str(event["customer_id"]).encode(), value=json.dumps(event).encode(),
                      partition=None if partitions is None else partitions[i])
    producer.flush(30)
    producer.close(10)


def owned_partitions(port: int, topic: str) -> set[int]:
    """Partitions of ``topic`` the worker behind this metrics port reports a lag for."""
    samples = metric_samples(port, "fraudstream_consumer_lag_messages")
    return {int(PARTITION_LABEL.search(labels).group(1)) for labels in samples if f'topic="{topic}"' in labels}


def counter(port: int, name: str) -> float:
    return sum(metric_samples(port, name).values())


def test_a_verdict_from_the_json_api_reaches_both_workers_and_blocks_the_cards_next_transaction(
        tiny_bundle, unique_topics, redis_url, read_topic, tmp_path):
    import httpx
    import redis

    from fraudstream.detectors.features.online import TerminalHistory
    from fraudstream.stream.embedded import free_port
    from fraudstream.stream.state.write_stamp import value_of

    topics = unique_topics
    prefix = topics.prefix
    settings = topics.settings(redis_url=redis_url)
    ports, page_port = [free_port(), free_port()], free_port()
    env = review_env(topics, redis_url, page_port)
    added = subprocess.run([sys.executable, "-m", "fraudstream.cli.main", "users", "add", "ann", "--password-stdin"],
                           input=PASSWORD + "\n", env=env, capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    workers = [Worker(settings, tiny_bundle.root, tmp_path / "first.log", metrics_port=ports[0])]
    page_log = tmp_path / "review.log"
    page = subprocess.Popen([sys.executable, "-m", "fraudstream.cli.main", "review"], env=env,
                            stdout=open(page_log, "ab"), stderr=subprocess.STDOUT)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    raw = redis.Redis.from_url(redis_url)
    logs = (tmp_path / "first.log", tmp_path / "second.log", page_log)
    try:
        workers[0].wait_ready()
        workers.append(Worker(settings, tiny_bundle.root, tmp_path / "second.log", metrics_port=ports[1]))
        workers[1].wait_ready()
        wait_for("the first worker's share after the second joined",
                 lambda: workers[0].text().count(READY_LINE) >= 2, STARTUP_TIMEOUT_S, logs)

        t0 = 1_530_000_000.0
        burst = sorted(({"transaction_id": 70_000_000 + c * BURST + i, "timestamp": t0 + c * 7 + i * 60.0,
                         "customer_id": card, "terminal_id": 27 + c, "amount": 30.0 + i}
                        for c, card in enumerate(CARDS) for i in range(BURST)), key=lambda t: t["timestamp"])
        produce(topics.bootstrap, topics.transactions, burst)
        # every transaction of the burst decided first: a case read before then gains items later, which the
        # verdict on the whole case then labels too
        burst_ids = {t["transaction_id"] for t in burst}
        wait_for("the burst's decisions", lambda: burst_ids <= {
            json.loads(rec.value)["transaction_id"] for rec in read_topic(topics.decisions, len(burst), timeout_s=2)},
            WAIT_S, logs)
        wait_for("two open cases", lambda: r.zcard(f"{prefix}:review:idx:priority") == 2, WAIT_S, logs)
        pending = {card: [int(t) for t in r.zrange(f"{prefix}:review:case-items:{card}", 0, -1)] for card in CARDS}
        assert all(len(tids) >= 2 for tids in pending.values()), pending

        # the analyst works both cases through the JSON API
        base = f"http://127.0.0.1:{page_port}"
        wait_for("the review page", lambda: _healthy(base), WAIT_S, logs)
        verdict_from = time.time()
        with httpx.Client(base_url=base, timeout=30) as api:
            login = api.post("/api/login", json={"user": "ann", "password": PASSWORD})
            assert login.status_code == 200, login.text
            headers = {"X-CSRF-Token": login.json()["csrf_token"]}
            claimed = []
            for _ in CARDS:
                claim = api.post("/api/claim", headers=headers)
                assert claim.status_code == 200, claim.text
                card = claim.json()["customer_id"]
                claimed.append(card)
                if card == CARDS[1]:  # one item legit, then the rest of the case fraud
                    one = api.post(f"/api/cases/{card}/verdict", headers=headers,
                                   json={"verdict": "legit", "transaction_id": pending[card][0]})
                    assert one.json() == {"result": "ok", "resolved": 1, "case_open": True}, one.text
                whole = api.post(f"/api/cases/{card}/verdict", headers=headers,
                                 json={"verdict": "fraud", "note": "confirmed with the bank"})
                assert whole.status_code == 200 and whole.json()["case_open"] is False, whole.text
                again = api.post(f"/api/cases/{card}/verdict", headers=headers, json={"verdict": "fraud"})
                assert again.json()["result"] == "unchanged"  # a double submit changes nothing
            assert sorted(claimed) == sorted(CARDS)
            assert api.post("/api/claim", headers=headers).status_code == 404
            assert {b["customer_id"] for b in api.get("/api/blocklist").json()["blocked"]} == set(CARDS)
        verdict_to = time.time()
        fraud = {t: not (card == CARDS[1] and t == pending[card][0]) for card in CARDS for t in pending[card]}

        # the labels topic: one analyst label per item, known at the verdict's time
        records = read_topic(topics.labels, len(fraud))
        on_topic = {json.loads(rec.value)["transaction_id"]: json.loads(rec.value) for rec in records}
        assert set(on_topic) == set(fraud) and len(records) == len(fraud)
        for tid, label in on_topic.items():
            assert label["source"] == "analyst" and label["fraud"] == fraud[tid]
            assert verdict_from <= label["known_at"] <= verdict_to
        label_ends = {}
        for rec in records:
            label_ends[rec.partition] = max(label_ends.get(rec.partition, 0), rec.offset + 1)

        # one transaction of each card, each on a partition of a different worker
        owned = [owned_partitions(port, topics.transactions) for port in ports]
        assert owned[0] and owned[1] and not owned[0] & owned[1], owned
        probes = [{"transaction_id": 71_000_000 + c, "timestamp": t0 + 86_400.0 + c, "customer_id": card,
                   "terminal_id": 99, "amount": 12.0} for c, card in enumerate(CARDS)]
        decided_before = [counter(port, "fraudstream_decisions_total") for port in ports]
        produce(topics.bootstrap, topics.transactions, probes, partitions=[min(owned[0]), min(owned[1])])
        probe_ids = {p["transaction_id"] for p in probes}
        decided = wait_for("both probes' decisions", lambda: (lambda found: found if len(found) == 2 else None)({
            d["transaction_id"]: d for d in (json.loads(rec.value) for rec in
                                             read_topic(topics.decisions, len(burst) + 2, timeout_s=5))
            if d["transaction_id"] in probe_ids}), WAIT_S, logs)
        for probe in probes:
            d = decided[probe["transaction_id"]]
            assert (d["decision"], d["stage"]) == ("BLOCK", "RULES") and BLOCK_REASON in d["reasons"], d
        assert [counter(port, "fraudstream_decisions_total") - before
                for port, before in zip(ports, decided_before)] == [1, 1]  # each worker decided one

        # every worker read every label before it scored: learned into the shared state once, found there after
        learned = [counter(port, "fraudstream_labels_total") for port in ports]
        skipped = [counter(port, "fraudstream_duplicate_labels_total") for port in ports]
        assert [n + s for n, s in zip(learned, skipped)] == [len(fraud)] * 2, (learned, skipped)
        assert sum(learned) == len(fraud), learned
        for port in ports:
            lag = {labels: v for labels, v in metric_samples(port, "fraudstream_consumer_lag_messages").items()
                   if f'topic="{topics.labels}"' in labels}
            assert len(lag) == settings.partitions and not any(lag.values()), lag
        for partition, end in label_ends.items():
            assert int(r.get(f"{prefix}:labels-applied:{topics.labels}:{partition}")) >= end
        for c, card in enumerate(CARDS):
            history = TerminalHistory.from_bytes(value_of(raw.get(f"{prefix}:term:{27 + c}")))
            frauds = set(history.fraud_transaction_ids)
            assert {t for t in pending[card] if t in frauds} == {t for t in pending[card] if fraud[t]}
    finally:
        if page.poll() is None:
            page.terminate()
            page.wait(15)
        for worker in workers:
            worker.stop()
        r.close()
        raw.close()


def _healthy(base: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{base}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
