"""The demo's Prometheus configuration: deploy/prometheus/prometheus.yml with local targets, still valid."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from fraudstream.cli.local_prometheus import (
    CONFIG_FILE,
    DEPLOY_DIR,
    MAIN_CONSOLE,
    REVIEW_JOB,
    SELF_JOB,
    WORKER_JOB,
    LocalPrometheus,
    PrometheusUnavailable,
    local_config,
)

BASE = {
    "global": {"scrape_interval": "5s"},
    "rule_files": ["alerts.yml", "/abs/other.yml"],
    "scrape_configs": [
        {"job_name": "w", "metrics_path": "/metrics", "dns_sd_configs": [{"names": ["worker"], "type": "A",
                                                                         "port": 9464}]},
        {"job_name": "r", "static_configs": [{"targets": ["review:8080"], "labels": {"service": "review"}}]},
        {"job_name": "p", "static_configs": [{"targets": ["localhost:9090"]}]},
    ],
}


def test_local_targets_replace_service_discovery_and_keep_the_rest() -> None:
    config = local_config(BASE, {"w": ["127.0.0.1:1"], "r": ["127.0.0.1:2"]}, Path("/deploy"))
    assert config["global"] == {"scrape_interval": "5s"}
    assert config["rule_files"] == ["/deploy/alerts.yml", "/abs/other.yml"]
    assert config["scrape_configs"] == [
        {"job_name": "w", "metrics_path": "/metrics", "static_configs": [{"targets": ["127.0.0.1:1"]}]},
        {"job_name": "r", "static_configs": [{"targets": ["127.0.0.1:2"], "labels": {"service": "review"}}]},
    ]


def test_an_unknown_job_is_named() -> None:
    with pytest.raises(KeyError, match="nope"):
        local_config(BASE, {"nope": ["127.0.0.1:1"]}, Path("/deploy"))


def test_the_project_config_has_the_jobs_the_demo_fills() -> None:
    base = yaml.safe_load((DEPLOY_DIR / CONFIG_FILE).read_text())
    jobs = {job["job_name"] for job in base["scrape_configs"]}
    assert {WORKER_JOB, REVIEW_JOB, SELF_JOB} <= jobs
    assert (DEPLOY_DIR / "consoles" / MAIN_CONSOLE).is_file()


def test_the_written_config_is_valid_for_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None or shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed (Debian package prometheus; scripts/install_system_deps.sh)")
    server = LocalPrometheus({WORKER_JOB: ["127.0.0.1:9464"], SELF_JOB: ["127.0.0.1:9090"]}, 9090, tmp_path)
    result = subprocess.run([promtool, "check", "config", str(server.config_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(arg.startswith("--web.console.templates=") and arg.endswith("consoles") for arg in server.argv)
    assert any(arg.startswith("--web.console.libraries=") for arg in server.argv)
    written = yaml.safe_load(server.config_path.read_text())
    assert [job["job_name"] for job in written["scrape_configs"]] == [WORKER_JOB, SELF_JOB]


def test_a_missing_binary_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fraudstream.cli.local_prometheus as module

    monkeypatch.setattr(module, "find_binary", lambda: None)
    with pytest.raises(PrometheusUnavailable, match="apt-get install prometheus"):
        LocalPrometheus({WORKER_JOB: ["127.0.0.1:1"]}, 9090, tmp_path)
