"""The Grafana dashboard: well-formed JSON, every query names metrics and labels the worker really exposes, and
every query is valid PromQL (parsed by promtool as recording rules)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram

from fraudstream.detectors.cascade.types import Decision, Stage
from fraudstream.stream.metrics import BatchHistogram, WorkerMetrics

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "fraudstream.json"
DATASOURCE_UID = "prometheus"
#: Rows an operator expects, top to bottom.
EXPECTED_ROWS = ["Throughput", "Latency", "Scores", "Errors", "Kafka", "Model", "Review", "Drift and labels",
                 "Review backlog", "Health"]
#: Grafana's dashboard grid is 24 columns wide.
GRID_COLUMNS = 24
#: Grafana variables the queries may use, and a value that makes them plain PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "1m"}
#: Labels Prometheus attaches to every scraped series.
TARGET_LABELS = {"job", "instance"}
#: Values the worker gives to its enum-like labels.
KNOWN_LABEL_VALUES = {"decision": {d.name for d in Decision}, "stage": {s.name for s in Stage},
                      "kind": {"risk", "light", "anomaly", "heavy"}}
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
                   "group_right", "inf", "nan"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?")
#: Metrics agreed for other services (the review page's own /metrics) or for the worker but not exported by
#: stream/metrics.py yet, with their labels: the dashboard may plot them, and nothing else.
AGREED_ELSEWHERE: dict[str, set[str]] = {
    "fraudstream_review_pending_cases": set(), "fraudstream_review_oldest_case_age_seconds": set(),
    "fraudstream_review_overdue_cases": set(), "fraudstream_review_verdicts_total": {"analyst", "verdict"},
    "fraudstream_redis_up": set(), "fraudstream_broker_up": set(),
    "fraudstream_last_batch_timestamp_seconds": set(), "fraudstream_held_back_events": set(),
    "fraudstream_late_events_total": set(),
    "fraudstream_labelled_decisions_total": {"model_version", "decision", "label"},
    "fraudstream_label_delay_seconds_bucket": {"source", "le"},
    "fraudstream_drift_psi": {"model_version", "signal"},
}
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!=|!~|=)\s*"([^"]*)"')


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def query_panels(dashboard: dict) -> list[dict]:
    """Every panel that runs queries (rows excluded), nested row panels included."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def plain_promql(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title + refId, PromQL with Grafana variables replaced) of every query of the dashboard."""
    return [(f"{p['title']} [{t['refId']}]", plain_promql(t["expr"]))
            for p in query_panels(load_dashboard()) for t in p["targets"]]


def selectors(expr: str) -> list[tuple[str, dict[str, str]]]:
    """(metric name, {label: value}) of every series selector in ``expr``; function names and keywords skipped."""
    without_ranges = re.sub(r"\[[^\]]*\]", "", GROUPING.sub(" ", expr))
    found = []
    for match in SELECTOR.finditer(without_ranges):
        name, braces = match.group(1), match.group(2)
        rest = without_ranges[match.end():].lstrip()
        if name.lower() in PROMQL_KEYWORDS or (rest.startswith("(") and not braces):
            continue
        # a name right after a digit is a number's exponent or a duration unit, not a metric.
        if match.start() > 0 and without_ranges[match.start() - 1].isdigit():
            continue
        found.append((name, dict((m[0], m[2]) for m in MATCHER.findall(braces or ""))))
    return found


def grouping_labels(expr: str) -> set[str]:
    return {label.strip() for _, labels in GROUPING.findall(expr) for label in labels.split(",") if label.strip()}


def recorded_series() -> dict[str, set[str]]:
    """Recording rule name -> the labels it keeps (its `by (...)` labels)."""
    found = {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                found[rule["record"]] = grouping_labels(rule["expr"])
    return found


def known_series() -> dict[str, set[str]]:
    """What a dashboard may query: the worker's series (they win), recording rules and agreed metrics."""
    return {**AGREED_ELSEWHERE, **recorded_series(), **exposed_series()}


def exposed_series() -> dict[str, set[str]]:
    """Sample name -> label names of everything the worker's registry exposes, each metric touched once."""
    metrics = WorkerMetrics()
    for metric in vars(metrics).values():
        if isinstance(metric, BatchHistogram):
            metric.observe_many(np.array([0.5]), "probe")
        elif isinstance(metric, (Counter, Gauge, Histogram)):
            labelnames = getattr(metric, "_labelnames", ())
            child = metric.labels(*["probe"] * len(labelnames)) if labelnames else metric
            if isinstance(metric, Counter):
                child.inc()
            elif isinstance(metric, Gauge):
                child.set(1)
            else:
                child.observe(1)
    series: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def test_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard["schemaVersion"] >= 36
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels] + [p["id"] for p in query_panels(dashboard) if p not in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert rows == EXPECTED_ROWS


def test_every_panel_queries_the_prometheus_datasource() -> None:
    for panel in query_panels(load_dashboard()):
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
            assert target["expr"].strip(), f"panel {panel['title']!r} has an empty query"
            leftover = re.findall(r"\$\w+", plain_promql(target["expr"]))
            assert not leftover, f"panel {panel['title']!r} uses undefined variables {leftover}"


def test_panels_fit_the_grid_without_overlapping() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in load_dashboard()["panels"]:
        g = panel["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["x"] + g["w"] <= GRID_COLUMNS, panel["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & taken, f"panel {panel['title']!r} overlaps another panel"
        taken |= cells


def test_selector_parser_finds_metrics_and_skips_functions() -> None:
    expr = ('histogram_quantile(0.99, sum by (le) (rate(a_bucket{kind="risk", le!="1"}[5m]))) / '
            'on (job) group_left b_total * 1e3 and c')
    assert selectors(expr) == [("a_bucket", {"kind": "risk", "le": "1"}), ("b_total", {}), ("c", {})]
    assert grouping_labels(expr) == {"le", "job"}


def test_queries_use_only_metrics_and_labels_the_worker_exposes() -> None:
    exposed = exposed_series()
    series = known_series()
    assert "fraudstream_decisions_total" in exposed  # the probe itself works
    expressions = dashboard_expressions()
    used_metrics = set()
    for where, expr in expressions:
        found = selectors(expr)
        assert found, f"{where}: no metric in {expr!r}"
        metric_labels: set[str] = set()
        for name, matchers in found:
            assert name in series, f"{where}: {name} is not a metric of stream/metrics.py, a rule or agreed"
            used_metrics.add(name)
            allowed = series[name] | TARGET_LABELS
            metric_labels |= allowed
            for label, value in matchers.items():
                assert label in allowed, f"{where}: {name} has no label {label!r}"
                if label in KNOWN_LABEL_VALUES:
                    assert value in KNOWN_LABEL_VALUES[label], f"{where}: {label}={value!r} never happens"
        unknown = grouping_labels(expr) - metric_labels
        assert not unknown, f"{where}: groups by labels {unknown} that its metrics do not have"
    # The dashboard covers every family the worker exports (a metric nobody plots is a metric nobody reads).
    families = {name.removesuffix(suffix) for name in exposed for suffix in ("_bucket", "_count", "_sum")
                if name.endswith(suffix)} | {n for n in exposed if not n.endswith(("_bucket", "_count", "_sum",
                                                                                   "_created"))}
    plotted = {n.removesuffix(s) for n in used_metrics for s in ("_bucket", "_count", "_sum") if n.endswith(s)}
    plotted |= used_metrics
    assert families - plotted == set(), f"metrics on no panel: {sorted(families - plotted)}"


def test_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; scripts/install_system_deps.sh)")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(dashboard_expressions())]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules['groups'][0]['rules'])} rules found" in result.stdout
