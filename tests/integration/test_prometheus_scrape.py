"""A real Prometheus server scrapes the worker's metrics endpoint; every dashboard query, console expression and
alert rule then runs against the scraped series without error, and the console page renders."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from prometheus_client import start_http_server

from fraudstream.stream.metrics import WorkerMetrics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "fraudstream.json"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
CONSOLES = ROOT / "deploy" / "prometheus" / "consoles"
CONSOLE_LIBRARIES = ROOT / "deploy" / "prometheus" / "console_libraries"
MAIN_CONSOLE = "fraudstream.html"
#: PromQL in a console page: backquoted figure arguments and single-quoted data-expr-N graph attributes.
CONSOLE_EXPRESSION = re.compile(r"`([^`]+)`|data-expr-\d+='([^']+)'")
METRIC_NAME = re.compile(r"\bfraudstream_[a-z0-9_]+\b")
HOST = "127.0.0.1"
JOB = "fraudstream-worker"
#: Scrape and rule evaluation interval of the test server (s).
SCRAPE_INTERVAL_S = 1
#: What `$__rate_interval` becomes: several scrapes, so rate() has samples to work with.
RATE_INTERVAL = "10s"
#: Scraped samples of the decisions counter needed before the queries run.
MIN_SAMPLES = 4
#: Longest wait for the server to start, and for enough scrapes (s).
START_TIMEOUT_S = 15
SCRAPE_TIMEOUT_S = 20
#: Longest wait for a clean exit after SIGTERM (s).
STOP_TIMEOUT_S = 10
#: Pause between two rounds of simulated traffic (s).
TRAFFIC_STEP_S = 0.25
HTTP_TIMEOUT_S = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def dashboard_expressions() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    panels = [child for p in panels for child in ([p] + p.get("panels", [])) if child["type"] != "row"]
    return [(f"{p['title']} [{t['refId']}]", t["expr"].replace("$__rate_interval", RATE_INTERVAL))
            for p in panels for t in p["targets"]]


def exported_names(metrics: WorkerMetrics) -> set[str]:
    return {sample.name for family in metrics.registry.collect() for sample in family.samples}


def console_expressions() -> list[str]:
    return [a or b for page in sorted(CONSOLES.glob("*.html"))
            for a, b in CONSOLE_EXPRESSION.findall(page.read_text())]


def simulate_traffic(metrics: WorkerMetrics, rng: np.random.Generator) -> None:
    """One micro-batch worth of every metric, through the worker's metrics API."""
    for decision, stage, n in [("ALLOW", "LIGHT", 90), ("ALLOW", "RULES", 5), ("BLOCK", "RULES", 2),
                               ("BLOCK", "HEAVY", 1), ("REVIEW", "HEAVY", 2)]:
        metrics.decisions.labels(decision=decision, stage=stage).inc(n)
    metrics.dlq.labels(reason="invalid_json").inc()
    metrics.duplicates.inc(3)
    metrics.labels.inc(4)
    metrics.duplicate_labels.inc()
    metrics.batch_errors.inc()
    metrics.state_conflicts.inc()
    metrics.review_items.inc(2)
    metrics.model_reloads.labels(outcome="loaded").inc()
    metrics.model_reloads.labels(outcome="failed").inc()
    for partition in range(3):
        metrics.consumer_lag.labels(topic="transactions", partition=str(partition)).set(rng.integers(0, 50))
    metrics.batch_size.observe(100)
    metrics.batch_seconds.observe(float(rng.uniform(0.002, 0.02)))
    metrics.latency.observe_many(rng.uniform(0.004, 0.06, 100))
    for kind in ("risk", "light", "anomaly", "heavy"):
        metrics.scores.observe_many(rng.beta(0.5, 5.0, 100), kind)


def get_json(base_url: str, path: str, **params: str) -> dict:
    url = f"{base_url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:  # 4xx/5xx carry the error message as JSON
        return json.loads(error.read())


@pytest.fixture
def worker_metrics() -> Iterator[tuple[WorkerMetrics, int]]:
    """The worker's metrics object served over HTTP on a free local port."""
    metrics = WorkerMetrics()
    metrics.set_model_version("20180510-test")
    port = free_port()
    server, thread = start_http_server(port, addr=HOST, registry=metrics.registry)
    try:
        yield metrics, port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=STOP_TIMEOUT_S)


@pytest.fixture
def prometheus(tmp_path: Path, worker_metrics: tuple[WorkerMetrics, int]) -> Iterator[str]:
    """A real Prometheus scraping the worker's endpoint every second with the project's alert rules loaded."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus server not installed (Debian package prometheus; scripts/install_system_deps.sh)")
    _, metrics_port = worker_metrics
    config = {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": f"{SCRAPE_INTERVAL_S}s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [f"{HOST}:{metrics_port}"]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address={HOST}:{port}", "--log.level=warn",
         f"--web.console.templates={CONSOLES}", f"--web.console.libraries={CONSOLE_LIBRARIES}"],
        stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, f"prometheus exited: {(tmp_path / 'prometheus.log').read_text()}"
            try:
                with urllib.request.urlopen(f"{base_url}/-/ready", timeout=HTTP_TIMEOUT_S) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        try:
            assert process.wait(timeout=STOP_TIMEOUT_S) == 0, "prometheus did not stop cleanly"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()


def test_prometheus_scrapes_worker_and_runs_every_query(prometheus: str,
                                                        worker_metrics: tuple[WorkerMetrics, int]) -> None:
    metrics, _ = worker_metrics
    rng = np.random.default_rng(7)
    enough = f"min(count_over_time(fraudstream_decisions_total[1m])) >= {MIN_SAMPLES}"
    deadline = time.monotonic() + SCRAPE_TIMEOUT_S
    while True:
        simulate_traffic(metrics, rng)
        if get_json(prometheus, "/api/v1/query", query=enough)["data"]["result"]:
            break
        assert time.monotonic() < deadline, "prometheus did not scrape the worker often enough"
        time.sleep(TRAFFIC_STEP_S)

    targets = get_json(prometheus, "/api/v1/targets")["data"]["activeTargets"]
    assert [(t["labels"]["job"], t["health"]) for t in targets] == [(JOB, "up")]

    decided = get_json(prometheus, "/api/v1/query", query="sum by (decision) (fraudstream_decisions_total)")
    totals = {r["metric"]["decision"]: float(r["value"][1]) for r in decided["data"]["result"]}
    assert set(totals) == {"ALLOW", "BLOCK", "REVIEW"}
    assert totals["ALLOW"] > totals["BLOCK"] > 0

    failures, checked = [], 0
    exported = exported_names(metrics)
    for where, expr in dashboard_expressions():
        answer = get_json(prometheus, "/api/v1/query", query=expr)
        if answer["status"] != "success":
            failures.append(f"{where}: {answer.get('error')}")
        elif set(METRIC_NAME.findall(expr)) <= exported and "ratio_rate6h" not in expr:
            checked += 1  # metrics of other services and recording rules over 6 h are not fed here
            if not answer["data"]["result"]:
                failures.append(f"{where}: no series for {expr}")
    assert not failures, "\n".join(failures)
    assert checked >= 30

    # Every recording and alert rule has been evaluated on the scraped series without error.
    deadline = time.monotonic() + SCRAPE_TIMEOUT_S
    while True:
        rules = [r for g in get_json(prometheus, "/api/v1/rules")["data"]["groups"] for r in g["rules"]]
        if rules and all(r["health"] != "unknown" for r in rules):
            break
        assert time.monotonic() < deadline, "prometheus did not evaluate the rules"
        time.sleep(TRAFFIC_STEP_S)
    assert len(rules) == len([r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]])
    broken = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not broken, broken


def test_console_expressions_return_data_and_the_page_renders(prometheus: str,
                                                             worker_metrics: tuple[WorkerMetrics, int]) -> None:
    metrics, _ = worker_metrics
    rng = np.random.default_rng(11)
    enough = f"min(count_over_time(fraudstream_decisions_total[1m])) >= {MIN_SAMPLES}"
    deadline = time.monotonic() + SCRAPE_TIMEOUT_S
    while not get_json(prometheus, "/api/v1/query", query=enough)["data"]["result"]:
        simulate_traffic(metrics, rng)
        assert time.monotonic() < deadline, "prometheus did not scrape the worker often enough"
        time.sleep(TRAFFIC_STEP_S)
    simulate_traffic(metrics, rng)
    exported = exported_names(metrics)
    failures, checked = [], 0
    for expr in console_expressions():
        answer = get_json(prometheus, "/api/v1/query", query=expr.replace("[1m]", f"[{RATE_INTERVAL}]"))
        if answer["status"] != "success":
            failures.append(f"{expr}: {answer.get('error')}")
            continue
        if set(METRIC_NAME.findall(expr)) <= exported and "ratio_rate6h" not in expr:
            checked += 1
            if not answer["data"]["result"]:
                failures.append(f"no series for {expr}")
    assert not failures, "\n".join(failures)
    assert checked >= 25

    with urllib.request.urlopen(f"{prometheus}/consoles/{MAIN_CONSOLE}", timeout=HTTP_TIMEOUT_S) as response:
        page = response.read().decode()
    assert "error executing template" not in page.lower()
    assert "20180510-test" in page  # the model version figure, rendered by the server
    assert re.search(r'decisions/s</div><div class="fs-stat-value"><a [^>]+>[0-9.]+', page), page[:2000]
