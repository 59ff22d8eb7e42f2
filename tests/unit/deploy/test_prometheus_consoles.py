"""The console dashboard (deploy/prometheus/consoles): every figure and graph has a valid PromQL expression over
metrics the services export, and it tells the same story as the Grafana dashboard."""

from __future__ import annotations

import html.parser
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from test_grafana_dashboard import AGREED_ELSEWHERE, dashboard_expressions, exposed_series, selectors

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
CONSOLES = PROMETHEUS_DIR / "consoles"
LIBRARIES = PROMETHEUS_DIR / "console_libraries"
RULES = PROMETHEUS_DIR / "alerts.yml"
#: Series Prometheus makes itself.
PROMETHEUS_SERIES = {"ALERTS", "up"}
#: What the page must show, as metric families (the issue's list: throughput, latency, routing, scores, drift,
#: review backlog and SLA, label truth, dead letters and duplicates, lag, model version).
REQUIRED_FAMILIES = {
    "fraudstream_decisions_total", "fraudstream_end_to_end_latency_seconds", "fraudstream_score",
    "fraudstream_drift_psi", "fraudstream_review_pending_cases", "fraudstream_review_overdue_cases",
    "fraudstream_review_oldest_case_age_seconds", "fraudstream_review_verdicts_total",
    "fraudstream_labelled_decisions_total", "fraudstream_label_delay_seconds", "fraudstream_dlq_total",
    "fraudstream_duplicates_total", "fraudstream_consumer_lag_messages", "fraudstream_model_info",
}
BACKQUOTED = re.compile(r"`([^`]+)`")


class _GraphParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.graphs: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if "fs-graph" in values.get("class", "").split():
            self.graphs.append(values)


def console_pages() -> list[Path]:
    return sorted(CONSOLES.glob("*.html"))


def graphs(page: Path) -> list[dict[str, str]]:
    parser = _GraphParser()
    parser.feed(page.read_text())
    return parser.graphs


def console_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every figure (backquoted template argument) and graph series of every console page."""
    found = []
    for page in console_pages():
        text = page.read_text()
        found += [(f"{page.name} figure {i}", expr) for i, expr in enumerate(BACKQUOTED.findall(text))]
        for graph in graphs(page):
            found += [(f"{page.name} graph {graph['data-title']!r}", value)
                      for key, value in sorted(graph.items()) if re.fullmatch(r"data-expr-\d+", key)]
    return found


def recorded_names() -> set[str]:
    return {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r}


def family(name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def used_families(expressions: list[tuple[str, str]]) -> set[str]:
    return {family(name) for _, expr in expressions for name, _ in selectors(expr)}


def test_the_main_console_and_its_library_exist() -> None:
    assert (CONSOLES / "fraudstream.html").is_file()
    library = (LIBRARIES / "fraudstream.lib").read_text()
    for template in ("fs.head", "fs.tail", "fs.stat", "fs.label"):
        assert f'define "{template}"' in library
    text = (CONSOLES / "fraudstream.html").read_text()
    used = set(re.findall(r'template "([\w.]+)"', text))
    defined = set(re.findall(r'define "([\w.]+)"', library))
    assert used <= defined, f"templates used but not defined: {used - defined}"


def test_every_graph_has_a_title_and_numbered_expressions() -> None:
    for page in console_pages():
        assert graphs(page), f"{page.name} has no graph"
        for graph in graphs(page):
            assert graph.get("data-title"), graph
            numbers = sorted(int(k.rsplit("-", 1)[1]) for k in graph if re.fullmatch(r"data-expr-\d+", k))
            assert numbers == list(range(1, len(numbers) + 1)) and numbers, f"{graph['data-title']}: {numbers}"


def test_expressions_use_metrics_that_exist() -> None:
    known = set(exposed_series()) | recorded_names() | PROMETHEUS_SERIES | set(AGREED_ELSEWHERE)
    expressions = console_expressions()
    assert len(expressions) > 40
    for where, expr in expressions:
        found = selectors(expr)
        assert found, f"{where}: no metric in {expr!r}"
        for name, _ in found:
            assert name in known, f"{where}: {name} is neither exported, recorded nor agreed"


def test_the_console_tells_the_grafana_story_and_more() -> None:
    console = used_families(console_expressions())
    assert REQUIRED_FAMILIES - console == set()
    grafana = used_families(dashboard_expressions())
    assert grafana - console == set(), f"on the Grafana dashboard only: {sorted(grafana - console)}"


def test_expressions_are_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; scripts/install_system_deps.sh)")
    expressions = console_expressions()
    rules = {"groups": [{"name": "console", "rules": [
        {"record": f"console:query_{i}", "expr": expr} for i, (_, expr) in enumerate(expressions)]}]}
    path = tmp_path / "console_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in result.stdout
