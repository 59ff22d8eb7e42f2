"""The real thing end to end: a ``fraudstream worker`` fed by a short replay with labels (plus a few bad and
re-delivered events), scraped by a real Prometheus started the way the demo starts it (deploy/prometheus config,
rules and consoles).  Every console, dashboard and recording-rule expression then returns data through the HTTP
API, every metric they name is on the worker's /metrics (or belongs to a service not running here), every rule
evaluates without error, and the console page renders the label-measured precision and drift."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from fraudstream.cli.local_prometheus import DEPLOY_DIR, SELF_JOB, WORKER_JOB, LocalPrometheus, find_binary
from fraudstream.stream.embedded import free_port

pytestmark = pytest.mark.integration

CONSOLES = DEPLOY_DIR / "consoles"
DASHBOARD = DEPLOY_DIR.parent / "grafana" / "dashboards" / "fraudstream.json"
RULES = DEPLOY_DIR / "alerts.yml"
#: Days of simulated traffic replayed, and the label delay of the replay: labels go out one day (the replay's lead)
#: before they are known, so a day after their transaction, whose decision is stored by then.
REPLAY_DAYS, LABELS_DELAY_S = 12, 2 * 86_400.0
REPLAY_RATE_TX_S = 400.0
SCRAPE_INTERVAL_S = 1
WORKER_START_TIMEOUT_S = 120.0
#: Longest wait (s) for the worker to decide everything and Prometheus to see it (a busy 2-core machine).
SCRAPE_TIMEOUT_S = 240.0
HTTP_TIMEOUT_S = 5.0
#: What `$__rate_interval` of the Grafana queries becomes.
RATE_INTERVAL = "1m"
#: Metrics of services this test does not run: the review page's own /metrics, and the worker's health gauges
#: that another part of the worker exports.  Any other name used must be on the worker's /metrics.
NOT_RUN_HERE = {
    "fraudstream_review_pending_cases", "fraudstream_review_oldest_case_age_seconds",
    "fraudstream_review_overdue_cases", "fraudstream_review_verdicts_total",
    "fraudstream_redis_up", "fraudstream_broker_up", "fraudstream_last_batch_timestamp_seconds",
    "fraudstream_held_back_events", "fraudstream_late_events_total",
}
PROMETHEUS_SERIES = {"ALERTS", "up"}
METRIC_NAME = re.compile(r"\b(?:fraudstream_[a-z0-9_]+|job_model_version:[a-z0-9_:]+|job:[a-z0-9_:]+)\b")
CONSOLE_EXPRESSION = re.compile(r"`([^`]+)`|data-expr-\d+='([^']+)'")
SUFFIXES = ("_bucket", "_count", "_sum")


def console_expressions() -> list[str]:
    return [a or b for page in sorted(CONSOLES.glob("*.html")) for a, b in CONSOLE_EXPRESSION.findall(page.read_text())]


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"].replace("$__rate_interval", RATE_INTERVAL) for p in panels if p["type"] != "row"
            for t in p["targets"]]


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def get_json(base_url: str, path: str, **params: str) -> dict:
    url = f"{base_url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read())


def query(base_url: str, expr: str) -> dict:
    return get_json(base_url, "/api/v1/query", query=expr)


def metric_names_on(url: str) -> set[str]:
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
        text = response.read().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


@pytest.fixture(scope="module")
def model_and_rows(tmp_path_factory):
    """(model root, rows to replay): a small model trained on the first days, the rows after them."""
    import pandas as pd

    from fraudstream.detectors.bundle import save_bundle
    from fraudstream.training.simulator import SimulationConfig, simulate
    from fraudstream.training.train import TrainSettings, train_from_frame

    frame = simulate(SimulationConfig(n_customers=150, n_terminals=300, nb_days=21 + REPLAY_DAYS, seed=21))
    start = frame["TX_DATETIME"].min().normalize()
    result = train_from_frame(frame, TrainSettings(light_trees=20, heavy_trees=20, heavy_depth=3,
                                                   anomaly_methods=("HBOS",), anomaly_max_rows=2000,
                                                   stacking_folds=2, imbalance="none"),
                              end=start + pd.Timedelta(days=21))
    root = tmp_path_factory.mktemp("models")
    save_bundle(result.cascade, root, result.manifest_extras)
    rows = frame[frame["TX_DATETIME"] >= start + pd.Timedelta(days=21)].reset_index(drop=True)
    return root, rows


@pytest.fixture
def worker(model_and_rows, unique_topics, redis_url, tmp_path) -> Iterator[tuple[object, int]]:
    """A `fraudstream worker` subprocess on fresh topics; yields (its settings, metrics port)."""
    root, _ = model_and_rows
    port = free_port()
    settings = unique_topics.settings(redis_url=redis_url, model_dir=str(root), metrics_port=port, web_port=0)
    env = dict(os.environ)
    env.update({f"FRAUDSTREAM_WORKER_{name.upper()}": str(value) for name, value in settings.model_dump().items()})
    log_path = tmp_path / "worker.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "fraudstream.cli.main", "worker"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while True:
            assert process.poll() is None, f"worker exited:\n{log_path.read_text()[-3000:]}"
            try:
                metric_names_on(f"http://127.0.0.1:{port}/metrics")
                break
            except OSError:
                assert time.monotonic() < deadline, f"worker metrics never answered:\n{log_path.read_text()[-3000:]}"
                time.sleep(0.5)
        yield settings, port
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def prometheus(worker, tmp_path) -> Iterator[str]:
    if find_binary() is None:
        pytest.skip("prometheus server not installed (Debian package prometheus; scripts/install_system_deps.sh)")
    _, metrics_port = worker
    port = free_port()
    server = LocalPrometheus({WORKER_JOB: [f"127.0.0.1:{metrics_port}"], SELF_JOB: [f"127.0.0.1:{port}"]}, port,
                             tmp_path, scrape_interval_s=SCRAPE_INTERVAL_S)
    with server:
        yield server.url


def feed(settings, rows) -> None:
    """Two malformed events, the first half of the replay with labels, a few of its transactions again
    (re-delivered), then the second half."""
    from fraudstream.detectors.schema import TransactionBatch
    from fraudstream.stream.replay import make_producer, replay

    producer = make_producer(settings.kafka_bootstrap_servers)
    try:
        producer.send(settings.transactions_topic, b"not json at all")
        producer.send(settings.transactions_topic, b'{"transaction_id": 5}')
        producer.flush()
        half = len(rows) // 2
        for part in (rows.iloc[:half], rows.iloc[half:]):
            summary = replay(part, settings, rate=REPLAY_RATE_TX_S, labels_delay_s=LABELS_DELAY_S, progress=False,
                             producer=producer)
            assert summary.errors == 0 and summary.labels_sent > 0, summary.format()
            if part is not rows.iloc[half:]:
                batch = TransactionBatch.from_frame(part.tail(20))
                for i in range(len(batch)):
                    producer.send(settings.transactions_topic, transaction_json(batch, i),
                                  key=str(batch.customer_id[i]).encode())
                producer.flush()
    finally:
        producer.close()


def transaction_json(batch, i: int) -> bytes:
    return json.dumps({"transaction_id": int(batch.transaction_id[i]), "timestamp": float(batch.timestamp[i]),
                       "customer_id": int(batch.customer_id[i]), "terminal_id": int(batch.terminal_id[i]),
                       "amount": float(batch.amount[i])}).encode()


def wait_for(base_url: str, expr: str, what: str) -> None:
    deadline = time.monotonic() + SCRAPE_TIMEOUT_S
    while not query(base_url, expr)["data"]["result"]:
        assert time.monotonic() < deadline, (
            f"prometheus never saw {what} ({expr}); decisions so far: "
            f"{query(base_url, 'sum(fraudstream_decisions_total)')['data']['result']}, held back: "
            f"{query(base_url, 'fraudstream_held_back_events')['data']['result']}")
        time.sleep(SCRAPE_INTERVAL_S)


def test_every_panel_and_rule_has_data_from_a_real_worker(model_and_rows, worker, prometheus) -> None:
    _, rows = model_and_rows
    settings, metrics_port = worker
    feed(settings, rows)
    # a good part of the replay decided (the event-time alignment may hold a partition's last events back)
    wait_for(prometheus, f"sum(fraudstream_decisions_total) >= {len(rows) // 3}", "the replay decided")
    wait_for(prometheus, "sum(fraudstream_duplicates_total) > 0", "duplicates")
    wait_for(prometheus, "sum(fraudstream_dlq_total) >= 2", "dead letters")
    wait_for(prometheus, "sum(fraudstream_labelled_decisions_total) > 0", "labels joined to decisions")
    # a small model may block or review none of the labelled transactions: those ratios then have no data
    decided = {r["metric"]["decision"] for r in query(
        prometheus, "sum by (decision) (fraudstream_labelled_decisions_total) > 0")["data"]["result"]}
    excused = {"BLOCK": "block_precision", "REVIEW": "review_precision"}
    excused_rules = {rule for decision, rule in excused.items() if decision not in decided}
    wait_for(prometheus, "count(fraudstream_drift_psi) >= 3", "drift")

    exported = metric_names_on(f"http://127.0.0.1:{metrics_port}/metrics")
    exported |= {name.removesuffix(s) for name in exported for s in SUFFIXES if name.endswith(s)}
    recorded = {r["record"] for r in rules() if "record" in r}
    expressions = console_expressions() + dashboard_expressions() + [r["expr"] for r in rules() if "record" in r]
    failures, checked = [], 0
    for expr in expressions:
        names = set(METRIC_NAME.findall(expr))
        unknown = names - exported - recorded - NOT_RUN_HERE - PROMETHEUS_SERIES
        if unknown:
            failures.append(f"{sorted(unknown)} not on the worker's /metrics: {expr}")
            continue
        answer = query(prometheus, expr)
        if answer["status"] != "success":
            failures.append(f"{answer.get('error')}: {expr}")
        elif not names & NOT_RUN_HERE and not any(rule in expr for rule in excused_rules):
            checked += 1
            if not answer["data"]["result"]:
                failures.append(f"no data: {expr}")
    assert not failures, "\n".join(failures)
    assert checked >= 60

    for result in query(prometheus, "job_model_version:fraudstream_cascade_recall:ratio_rate6h")["data"]["result"]:
        assert 0.0 <= float(result["value"][1]) <= 1.0
    psi = {r["metric"]["signal"]: float(r["value"][1]) for r in query(prometheus, "fraudstream_drift_psi")
           ["data"]["result"]}
    assert {"light_score", "anomaly_score", "TX_AMOUNT"} <= set(psi) and min(psi.values()) >= 0

    deadline = time.monotonic() + SCRAPE_TIMEOUT_S
    while True:
        evaluated = [r for g in get_json(prometheus, "/api/v1/rules")["data"]["groups"] for r in g["rules"]]
        if evaluated and all(r["health"] != "unknown" for r in evaluated):
            break
        assert time.monotonic() < deadline, "prometheus did not evaluate the rules"
        time.sleep(SCRAPE_INTERVAL_S)
    assert len(evaluated) == len(rules())
    assert [(r["name"], r.get("lastError")) for r in evaluated if r["health"] != "ok"] == []

    with urllib.request.urlopen(f"{prometheus}/consoles/fraudstream.html", timeout=HTTP_TIMEOUT_S) as response:
        page = response.read().decode()
    assert "error executing template" not in page.lower()
    for figure in ("highest drift PSI", "dead-lettered", "duplicates"):
        assert re.search(re.escape(figure) + r'</div><div class="fs-stat-value"><a [^>]+>[0-9.]+', page), figure
