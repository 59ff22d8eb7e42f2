"""The Prometheus configuration and alert rules: promtool accepts them, their unit tests pass, every alert is
tested firing, and a broken copy is rejected (so these checks can fail)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = PROMETHEUS_DIR / "alerts_test.yml"
#: Longest a promtool run may take (s).
PROMTOOL_TIMEOUT_S = 60
SEVERITIES = {"critical", "warning"}
#: Metric names of the worker that the alerts must watch (besides Prometheus' own `up`).
WATCHED_METRICS = ["fraudstream_end_to_end_latency_seconds_bucket", "fraudstream_consumer_lag_messages",
                   "fraudstream_dlq_total", "fraudstream_decisions_total", "fraudstream_batch_errors_total",
                   "fraudstream_review_items_total", "fraudstream_last_batch_timestamp_seconds",
                   "fraudstream_labelled_decisions_total", "fraudstream_drift_psi",
                   "fraudstream_review_overdue_cases"]


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian package prometheus; scripts/install_system_deps.sh)")
    return path


def run_promtool(promtool: str, *args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT_S)


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_config_is_valid(promtool: str) -> None:
    result = run_promtool(promtool, "check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_are_valid(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_pass(promtool: str) -> None:
    result = run_promtool(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_labelled_and_explained() -> None:
    alerts = alert_rules()
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names)), "alert names must be unique"
    for alert in alerts:
        assert alert["labels"]["severity"] in SEVERITIES, alert["alert"]
        annotations = alert["annotations"]
        assert annotations["summary"].strip(), alert["alert"]
        assert re.search(r"\b(check|look)\b", annotations["description"], re.IGNORECASE), (
            f"{alert['alert']}: the description must tell the operator what to check")
    expressions = " ".join(a["expr"] for a in alerts) + " ".join(
        r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"])
    for metric in WATCHED_METRICS:
        assert metric in expressions, f"no rule watches {metric}"


def test_every_alert_is_tested_firing() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired, quiet = set(), set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {a["alert"] for a in alert_rules()}
    assert names - fired == set(), f"alerts never tested firing: {sorted(names - fired)}"
    assert names - quiet == set(), f"alerts never tested staying quiet: {sorted(names - quiet)}"


def test_broken_rules_are_rejected(promtool: str, tmp_path: Path) -> None:
    broken = RULES.read_text().replace("up{job=\"fraudstream-worker\"} == 0", "up{job=\"fraudstream-worker\" == 0",
                                       1)
    assert broken != RULES.read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    result = run_promtool(promtool, "check", "rules", str(tmp_path / "alerts.yml"), cwd=tmp_path)
    assert result.returncode != 0
    assert "FraudstreamWorkerDown" in result.stdout + result.stderr or "parse" in result.stdout + result.stderr


@pytest.mark.parametrize(("threshold", "moved", "alert"), [
    ("p99_rate5m > 0.05", "p99_rate5m > 0.1", "FraudstreamEndToEndLatencyHigh"),
    ("fraudstream_last_batch_timestamp_seconds) > 60", "fraudstream_last_batch_timestamp_seconds) > 300",
     "FraudstreamWorkerStalled"),
    ("ratio_rate6h < 0.9", "ratio_rate6h < 0.7", "FraudstreamBlockPrecisionLow"),
    ("(fraudstream_drift_psi) > 0.2", "(fraudstream_drift_psi) > 0.5", "FraudstreamDriftHigh"),
])
def test_rule_tests_catch_a_wrong_threshold(promtool: str, tmp_path: Path, threshold: str, moved: str,
                                            alert: str) -> None:
    """Moving a threshold must make that alert's test fail: the tests really check thresholds."""
    text = RULES.read_text()
    loosened = text.replace(threshold, moved, 1)
    assert loosened != text
    (tmp_path / "alerts.yml").write_text(loosened)
    shutil.copy(RULE_TESTS, tmp_path / "alerts_test.yml")
    result = run_promtool(promtool, "test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert alert in result.stdout + result.stderr
