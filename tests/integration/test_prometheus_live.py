"""The operator's view end to end: a real Prometheus (the demo's :class:`LocalPrometheus`, with the project's
configuration, rules and consoles) scrapes a real ``fraudstream worker`` and a real review page while a short
replay with labels, a few bad events, re-sent transactions and an analyst's verdict go through them.

Then every dashboard panel, console expression and rule runs through Prometheus' HTTP API: each one succeeds,
each one whose metrics the two services export returns series, and every metric name they use is a metric
family of one of the two ``/metrics`` pages (or a recording rule of ``alerts.yml``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest
import yaml
from test_prometheus_scrape import (
    CONSOLE_EXPRESSION,
    CONSOLES,
    HTTP_TIMEOUT_S,
    METRIC_NAME,
    RULES,
    dashboard_expressions,
    get_json,
)
from waiting import wait_for
from worker_process import Worker

pytestmark = pytest.mark.integration

N_ROWS = 2500
REPLAY_RATE_TX_S = 800.0
#: Transactions re-sent after the replay (each one a duplicate the worker answers from its stored decision).
N_RESENT = 50
PASSWORD = "operator test password 7"
ANALYST = "olga"
#: Scrape and rule evaluation interval (s) of the test's Prometheus, and the range of rate() it allows.
SCRAPE_INTERVAL_S = 1.0
RATE_WINDOW = "15s"
#: Longest waits (s): services up, every transaction decided, Prometheus has the series.
STARTUP_TIMEOUT_S = 90.0
DECIDED_TIMEOUT_S = 240.0
SERIES_TIMEOUT_S = 60.0
#: A card whose burst of transactions in one hour trips the burst rule (REVIEW from the 20th on).
#: A recording rule's name, ``level:metric:operations``.
RECORDED_NAME = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b")
BURST_CARD, BURST_SIZE, BURST_ID = 990_001, 24, 70_000_000


def page(url: str, headers: dict[str, str] | None = None) -> str:
    try:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return response.read().decode()
    except OSError:
        return ""


def metric_families(text: str) -> set[str]:
    """Names of the metric families a /metrics page declares, with their sample names (_total, _bucket...)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names


def sampled(text: str) -> set[str]:
    """Names that have at least one sample on a /metrics page."""
    return {line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines() if line and line[0] != "#"}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads (recording rules named ``level:metric:operation`` are not split)."""
    return set(METRIC_NAME.findall(RECORDED_NAME.sub(" ", expr)))


def recording_rules() -> set[str]:
    return {rule["record"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
            if "record" in rule}


def rule_expressions() -> list[tuple[str, str]]:
    return [(rule.get("record") or rule["alert"], rule["expr"])
            for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def console_expressions() -> list[str]:
    return [a or b for console in sorted(CONSOLES.glob("*.html"))
            for a, b in CONSOLE_EXPRESSION.findall(console.read_text())]


def api_post(base: str, path: str, body: dict, cookie: str = "", csrf: str = "") -> tuple[dict, str]:
    headers = {"Content-Type": "application/json"}
    if cookie:
        headers["Cookie"] = cookie
    if csrf:
        headers["X-CSRF-Token"] = csrf
    request = urllib.request.Request(f"{base}{path}", data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
        return json.loads(response.read()), response.headers.get("Set-Cookie", "")


def burst(t0: float) -> list[dict]:
    return [{"transaction_id": BURST_ID + i, "timestamp": t0 + 60.0 * i, "customer_id": BURST_CARD,
             "terminal_id": 17, "amount": 25.0 + i} for i in range(BURST_SIZE)]


def send(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for key, value in values:
        producer.send(topic, key=key, value=value)
    producer.flush(30)
    producer.close(10)


def test_real_worker_and_review_page_feed_every_dashboard_query(tiny_bundle, unique_topics, redis_url, tmp_path):
    from fraudstream.cli.local_prometheus import REVIEW_JOB, WORKER_JOB, LocalPrometheus, find_binary
    from fraudstream.stream.embedded import free_port
    from fraudstream.stream.replay import replay

    if find_binary() is None:
        pytest.skip("prometheus server not installed (Debian package prometheus; scripts/install_system_deps.sh)")
    topics = unique_topics
    rows = tiny_bundle.rows(N_ROWS)
    worker_port, page_port, prometheus_port = free_port(), free_port(), free_port()
    settings = topics.settings(redis_url=redis_url)
    env = dict(os.environ, REDIS_URL=redis_url, KAFKA_BOOTSTRAP_SERVERS=topics.bootstrap,
               FRAUDSTREAM_REVIEW_REDIS_PREFIX=settings.redis_prefix,
               FRAUDSTREAM_REVIEW_LABELS_TOPIC=topics.labels, FRAUDSTREAM_REVIEW_PAGE_PORT=str(page_port),
               FRAUDSTREAM_REVIEW_INGEST_EVERY_S="0.2", FRAUDSTREAM_REVIEW_PUBLISH_EVERY_S="0.2",
               FRAUDSTREAM_REVIEW_PASSWORD_TIME_COST="1", FRAUDSTREAM_REVIEW_PASSWORD_MEMORY_KIB="8192")
    added = subprocess.run([sys.executable, "-m", "fraudstream.cli.main", "users", "add", ANALYST,
                            "--password-stdin"], input=PASSWORD + "\n", env=env, capture_output=True, text=True)
    assert added.returncode == 0, added.stderr

    worker_log, page_log = tmp_path / "worker.log", tmp_path / "review.log"
    logs = (worker_log, page_log, tmp_path / "prometheus" / "prometheus.log")
    worker = Worker(settings, tiny_bundle.root, worker_log, metrics_port=worker_port)
    review = subprocess.Popen([sys.executable, "-m", "fraudstream.cli.main", "review"], env=env,
                              stdout=page_log.open("ab"), stderr=subprocess.STDOUT)
    (tmp_path / "prometheus").mkdir()
    prometheus = LocalPrometheus({WORKER_JOB: [f"127.0.0.1:{worker_port}"], REVIEW_JOB: [f"127.0.0.1:{page_port}"]},
                                 prometheus_port, tmp_path / "prometheus", scrape_interval_s=SCRAPE_INTERVAL_S)
    worker_metrics = f"http://127.0.0.1:{worker_port}/metrics"
    review_base = f"http://127.0.0.1:{page_port}"
    try:
        worker.wait_ready()
        wait_for("the review page", lambda: page(f"{review_base}/health"), STARTUP_TIMEOUT_S, logs)
        prometheus.start()

        # Traffic: bad events on both topics, the replay with one label per transaction, a card's burst that
        # opens a review case, and transactions sent a second time.
        send(topics.bootstrap, topics.transactions, [(b"bad", b"{not json"), (b"bad", b'{"transaction_id": 1}')])
        send(topics.bootstrap, topics.labels, [(b"bad", b"[1, 2")])
        summary = replay(rows, settings, rate=REPLAY_RATE_TX_S, labels_delay_s=86_400.0, labels_lead_s=0.0,
                         label_feed="all", progress=False)
        assert summary.sent == N_ROWS and summary.errors == 0
        t_end = float(rows["TX_DATETIME"].max().timestamp())
        events = burst(t_end + 60.0)
        send(topics.bootstrap, topics.transactions,
             [(str(e["customer_id"]).encode(), json.dumps(e).encode()) for e in events])
        resent = [{"transaction_id": int(r.TRANSACTION_ID), "timestamp": float(r.TX_DATETIME.timestamp()),
                   "customer_id": int(r.CUSTOMER_ID), "terminal_id": int(r.TERMINAL_ID),
                   "amount": float(r.TX_AMOUNT)} for r in rows.head(N_RESENT).itertuples()]
        send(topics.bootstrap, topics.transactions,
             [(str(e["customer_id"]).encode(), json.dumps(e).encode()) for e in resent])

        expected = N_ROWS + BURST_SIZE

        def decided() -> bool:
            text = page(worker_metrics)
            total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                        if line.startswith("fraudstream_decisions_total{"))
            return total >= expected
        wait_for(f"{expected} decisions", decided, DECIDED_TIMEOUT_S, logs)

        # The analyst takes the best case and calls it fraud (a verdict, a label, a block-list entry).
        login, cookie = api_post(review_base, "/api/login", {"user": ANALYST, "password": PASSWORD})
        cookie = cookie.split(";", 1)[0]
        claimed = wait_for("a review case", lambda: _claim(review_base, cookie, login["csrf_token"]),
                           STARTUP_TIMEOUT_S, logs)
        verdict, _ = api_post(review_base, f"/api/cases/{claimed}/verdict", {"verdict": "fraud"}, cookie,
                              login["csrf_token"])
        assert verdict["resolved"] >= 1

        worker_text, review_text = page(worker_metrics), page(f"{review_base}/metrics")
        assert worker_text and review_text
        exported = metric_families(worker_text) | metric_families(review_text) | recording_rules()
        with_samples = sampled(worker_text) | sampled(review_text)
        # What this traffic must have produced: truth from labels, drift, dead letters, duplicates, a verdict.
        produced = {"fraudstream_labelled_decisions_total", "fraudstream_label_delay_seconds_bucket",
                    "fraudstream_worker_latency_seconds_bucket",
                    "fraudstream_drift_psi", "fraudstream_dlq_total", "fraudstream_duplicates_total",
                    "fraudstream_review_items_total", "fraudstream_review_verdicts_total"}
        assert produced <= with_samples, sorted(produced - with_samples)

        # Every metric the dashboard, the consoles and the rules name is exported by one of the services.
        used = {name for _, expr in dashboard_expressions() + rule_expressions() for name in metric_names(expr)}
        used |= {name for expr in console_expressions() for name in metric_names(expr)}
        missing = sorted(name for name in used if name not in exported)
        assert not missing, f"named by a dashboard, console or rule but exported by no service: {missing}"

        # Prometheus has scraped both services several times since the traffic.
        enough = f"min(count_over_time(fraudstream_decisions_total[{RATE_WINDOW}])) >= 4"
        wait_for("scrapes", lambda: get_json(prometheus.url, "/api/v1/query", query=enough)["data"]["result"],
                 SERIES_TIMEOUT_S, logs)
        targets = get_json(prometheus.url, "/api/v1/targets")["data"]["activeTargets"]
        assert sorted((t["labels"]["job"], t["health"]) for t in targets) == [(REVIEW_JOB, "up"), (WORKER_JOB, "up")]

        alerts = {f"rule {name}" for name, _ in rule_expressions() if name not in recording_rules()}
        failures, checked = [], 0  # an alert's expression has series only while it fires: run, not checked
        queries = [(where, expr.replace("$__rate_interval", RATE_WINDOW)) for where, expr in dashboard_expressions()]
        queries += [(f"console: {expr}", expr.replace("[1m]", f"[{RATE_WINDOW}]")) for expr in console_expressions()]
        queries += [(f"rule {name}", expr) for name, expr in rule_expressions()]
        for where, expr in queries:
            answer = get_json(prometheus.url, "/api/v1/query", query=expr)
            if answer["status"] != "success":
                failures.append(f"{where}: {answer.get('error')}")
                continue
            names = metric_names(expr)
            if names <= with_samples and not RECORDED_NAME.search(expr) and where not in alerts:
                checked += 1
                if not answer["data"]["result"]:
                    failures.append(f"{where}: no series for {expr}")
        assert not failures, "\n".join(failures)
        assert checked >= 40
        print(f"{checked} of {len(queries)} expressions checked for series")

        console = page(prometheus.console_url)
        assert console and "error executing template" not in console.lower()
        assert tiny_bundle.version in console  # the model version, rendered by the server from the scrape
    finally:
        prometheus.stop()
        if review.poll() is None:
            review.terminate()
            try:
                review.wait(15)
            except subprocess.TimeoutExpired:
                review.kill()
        worker.stop()


def _claim(base: str, cookie: str, csrf: str) -> str | None:
    try:
        claimed, _ = api_post(base, "/api/claim", {}, cookie, csrf)
    except urllib.error.HTTPError:  # 404 while the worker's REVIEW items are not yet ingested into cases
        return None
    return urllib.parse.quote(str(claimed["customer_id"]))

