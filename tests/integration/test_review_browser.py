"""The analyst's whole loop in a real browser: Debian's chromium (Playwright) on the review page, with the real
worker, broker and Redis.

Three cards each send a burst of transactions (the burst rule sends them to REVIEW); the analyst logs in, opens
the queue and labels the three cases with the keyboard (``n``, then ``f``, ``l``, ``f``).  Then: the verdicts are
in Redis, on the labels topic (source analyst) and in the label export; the worker has learned the labels into
its terminal state and counted them; and the next transaction of a card labelled fraud is BLOCKed by the rules
stage (the live block list).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "analyst password 42"
CARDS = (900_001, 900_002, 900_003)
#: Transactions per card in the burst (the burst rule sends the 20th and later ones of the hour to REVIEW).
BURST = 24
STARTUP_TIMEOUT_S = 120.0
WAIT_S = 60.0
BLOCK_REASON = "rule:live_block_list"


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = open(log, "ab")
    return subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def burst_transactions(start_id: int, t0: float) -> list[dict]:
    out = []
    for c, card in enumerate(CARDS):
        for i in range(BURST):
            out.append({"transaction_id": start_id + c * BURST + i, "timestamp": t0 + c * 7 + i * 60.0,
                        "customer_id": card, "terminal_id": 17 + c, "amount": 30.0 + i})
    return sorted(out, key=lambda t: t["timestamp"])


def produce(bootstrap: str, topic: str, events: list[dict]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for event in events:
        producer.send(topic, key=str(event["customer_id"]).encode(), value=json.dumps(event).encode())
    producer.flush(30)
    producer.close(10)


def test_analyst_labels_three_cases_with_the_keyboard_and_the_worker_blocks_the_card(
        unique_topics, redis_url, tiny_bundle, read_topic, tmp_path):
    import redis
    from playwright.sync_api import sync_playwright

    from fraudstream.detectors.features.online import TerminalHistory
    from fraudstream.stream.embedded import free_port
    from fraudstream.stream.state.write_stamp import value_of

    topics = unique_topics
    prefix = topics.prefix
    metrics_port, page_port = free_port(), free_port()
    settings = topics.settings(model_dir=str(tiny_bundle.root), metrics_port=metrics_port, redis_url=redis_url)
    env = dict(os.environ)
    env.update(worker_env(settings))
    env.update(REDIS_URL=redis_url, KAFKA_BOOTSTRAP_SERVERS=topics.bootstrap,
               FRAUDSTREAM_REVIEW_PAGE_PORT=str(page_port),
               FRAUDSTREAM_REVIEW_INGEST_EVERY_S="0.2", FRAUDSTREAM_REVIEW_PUBLISH_EVERY_S="0.2")
    worker_log, page_log = tmp_path / "worker.log", tmp_path / "review.log"
    added = subprocess.run([sys.executable, "-m", "fraudstream.cli.main", "users", "add", "ann",
                            "--password-stdin"], input=PASSWORD + "\n", env=env, capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    worker = spawn([sys.executable, "-m", "fraudstream.cli.main", "worker"], env, worker_log)
    page = spawn([sys.executable, "-m", "fraudstream.cli.main", "review"], env, page_log)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    raw = redis.Redis.from_url(redis_url)
    logs = (worker_log, page_log)
    try:
        import urllib.request

        def metrics_text() -> str:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read().decode()
            except OSError:
                return ""

        wait_for("the worker's metrics", metrics_text, STARTUP_TIMEOUT_S, logs)
        t0 = 1_530_000_000.0
        events = burst_transactions(50_000_000, t0)
        produce(topics.bootstrap, topics.transactions, events)
        wait_for("three open cases", lambda: r.zcard(f"{prefix}:review:idx:priority") == 3, WAIT_S, logs)
        pending = {card: r.zrange(f"{prefix}:review:case-items:{card}", 0, -1) for card in CARDS}
        assert all(pending.values()), pending

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            tab = browser.new_page()
            base = f"http://127.0.0.1:{page_port}"
            tab.goto(f"{base}/login")
            tab.fill("input[name=user]", "ann")
            tab.fill("input[name=password]", PASSWORD)
            tab.click("button[type=submit]")
            tab.wait_for_url(f"{base}/queue")
            assert tab.inner_text("#open-cases") == "3"
            order = [int(row.get_attribute("data-card")) for row in tab.query_selector_all("#queue tr[data-card]")]
            assert sorted(order) == sorted(CARDS)
            tab.keyboard.press("?")
            assert tab.is_visible("#help")
            tab.keyboard.press("?")
            seen = []
            tab.keyboard.press("n")
            for key in ("f", "l", "f"):
                tab.wait_for_selector("#case[data-status=open]")
                card = int(tab.get_attribute("#case", "data-card"))
                seen.append((card, key))
                tab.keyboard.press(key)
                tab.wait_for_load_state()
                wait_for(f"the verdict on card {card}",
                         lambda card=card: r.hget(f"{prefix}:review:case:{card}", "status") == "resolved", WAIT_S, logs)
            tab.wait_for_url(f"{base}/queue?msg=Queue+cleared")
            browser.close()
        assert [c for c, _ in seen] == order  # the keyboard went through the queue in priority order
        verdicts = {card: ("fraud" if key == "f" else "legit") for card, key in seen}

        # 1. Redis: every item resolved with its case's verdict; fraud cards on the block list
        labelled = {}
        for card, tids in pending.items():
            for tid in tids:
                item = r.hgetall(f"{prefix}:review:item:{tid}")
                assert (item["status"], item["verdict"], item["analyst"]) == ("resolved", verdicts[card], "ann")
                labelled[int(tid)] = verdicts[card] == "fraud"
        blocked = {card for card, v in verdicts.items() if v == "fraud"}
        assert {card for card in CARDS if r.exists(f"{prefix}:blocklist:{card}")} == blocked

        # 2. the labels topic: one analyst label per item
        records = read_topic(topics.labels, len(labelled))
        on_topic = {json.loads(rec.value)["transaction_id"]: json.loads(rec.value) for rec in records}
        assert set(on_topic) == set(labelled)
        assert all(lab["source"] == "analyst" and lab["fraud"] == labelled[t] for t, lab in on_topic.items())

        # 3. the export
        out = tmp_path / "labels.csv"
        export = subprocess.run([sys.executable, "-m", "fraudstream.cli.main", "labels", "export", "--format",
                                 "csv", "--out", str(out)], env=env, capture_output=True, text=True)
        assert export.returncode == 0, export.stderr
        import pandas as pd

        frame = pd.read_csv(out)
        assert dict(zip(frame["TRANSACTION_ID"], frame["TX_FRAUD"])) == {t: int(f) for t, f in labelled.items()}
        assert set(frame["analyst"]) == {"ann"}

        # 4. the next transaction of a blocked card is BLOCKed by the rules stage
        card = sorted(blocked)[0]
        probe = {"transaction_id": 60_000_000, "timestamp": t0 + 86_400.0, "customer_id": card,
                 "terminal_id": 99, "amount": 12.0}
        produce(topics.bootstrap, topics.transactions, [probe])
        decided = wait_for("the probe's decision", lambda: [
            json.loads(rec.value) for rec in read_topic(topics.decisions, len(events) + 1, timeout_s=5)
            if json.loads(rec.value)["transaction_id"] == probe["transaction_id"]], WAIT_S, logs)
        assert decided[0]["decision"] == "BLOCK" and decided[0]["stage"] == "RULES"
        assert BLOCK_REASON in decided[0]["reasons"]
        # 5. the worker learned the labels before it scored that transaction: counted, and in its terminal state
        def learned() -> bool:
            text = metrics_text()
            line = [ln for ln in text.splitlines() if ln.startswith("fraudstream_labels_total ")]
            return bool(line) and float(line[0].split()[-1]) >= len(labelled)

        wait_for("the worker to count the analyst labels", learned, WAIT_S, logs)
        for c, card in enumerate(CARDS):
            history = TerminalHistory.from_bytes(value_of(raw.get(f"{prefix}:term:{17 + c}")))
            frauds = set(history.fraud_transaction_ids)
            for tid in pending[card]:
                assert (int(tid) in frauds) == (verdicts[card] == "fraud")

    finally:
        stop(page)
        stop(worker)
        r.close()
        raw.close()


def worker_env(settings) -> dict[str, str]:
    """The worker's environment for these settings (the review page reads the shared ones: prefix, topic)."""
    from fraudstream.stream.settings import ENV_PREFIX

    return {f"{ENV_PREFIX}{name.upper()}": str(getattr(settings, name)) for name in type(settings).model_fields}
