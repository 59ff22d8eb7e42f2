"""A Prometheus server on this machine for the demo: the project's own configuration, rules and consoles.

The configuration is ``deploy/prometheus/prometheus.yml`` (the one docker-compose uses) with each job's service
discovery replaced by the local targets the demo started (:func:`local_config`, pure), its rule files resolved to
absolute paths, and the console templates of ``deploy/prometheus/consoles`` served at ``/consoles/``.
:class:`LocalPrometheus` runs the binary (Debian's ``/usr/bin/prometheus``, 2.x) with its data in a scratch
directory, waits until it is ready, and stops it.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: deploy/prometheus of the source tree this module belongs to (present in a source checkout or editable install).
DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
CONFIG_FILE = "prometheus.yml"
CONSOLES_DIR = "consoles"
CONSOLE_LIBRARIES_DIR = "console_libraries"
#: The console an operator opens first.
MAIN_CONSOLE = "fraudstream.html"
#: Scrape job names of deploy/prometheus/prometheus.yml.
WORKER_JOB, REVIEW_JOB, SELF_JOB = "fraudstream-worker", "fraudstream-review", "prometheus"
#: How to get the server where it is missing.
INSTALL_HINT = "install Debian's prometheus package (sudo apt-get install prometheus) or run `make demo`"
#: Longest wait (s) for the server to answer /-/ready, and poll period (s).
READY_TIMEOUT_S = 30.0
READY_POLL_S = 0.2
HTTP_TIMEOUT_S = 2.0
#: Grace (s) after SIGTERM before SIGKILL (Prometheus writes its head block on exit).
STOP_GRACE_S = 15.0
#: Samples older than this are dropped (a demo's store stays small).
RETENTION = "1d"

_SERVICE_DISCOVERY_KEYS = ("static_configs", "dns_sd_configs", "file_sd_configs", "docker_sd_configs",
                           "kubernetes_sd_configs")


class PrometheusUnavailable(RuntimeError):
    """The server cannot run here: binary or configuration missing, or it did not start (message says why)."""


def find_binary() -> str | None:
    """Path of the ``prometheus`` server binary on PATH (Debian: /usr/bin/prometheus), or None."""
    return shutil.which("prometheus")


def local_config(base: Mapping[str, Any], targets: Mapping[str, Sequence[str]], rules_dir: Path) -> dict[str, Any]:
    """``base`` (a parsed prometheus.yml) scraping ``targets`` (job name -> ``host:port`` list) instead.

    Jobs of ``base`` without local targets are dropped, their labels and paths are kept; relative rule files are
    resolved against ``rules_dir``.  Raises :class:`KeyError` naming a job in ``targets`` that ``base`` lacks.
    """
    config = {key: value for key, value in base.items() if key not in ("scrape_configs", "rule_files")}
    config["rule_files"] = [str(rules_dir / path) if not Path(path).is_absolute() else path
                            for path in base.get("rule_files", [])]
    jobs = {job["job_name"]: job for job in base.get("scrape_configs", [])}
    unknown = set(targets) - set(jobs)
    if unknown:
        raise KeyError(f"{CONFIG_FILE} has no scrape job {sorted(unknown)}; it has {sorted(jobs)}")
    scrape_configs = []
    for name, job in jobs.items():
        if not targets.get(name):
            continue
        local = {key: value for key, value in job.items() if key not in _SERVICE_DISCOVERY_KEYS}
        labels: dict[str, str] = {}
        for static in job.get("static_configs", []):
            labels.update(static.get("labels", {}))
        local["static_configs"] = [{"targets": list(targets[name]), **({"labels": labels} if labels else {})}]
        scrape_configs.append(local)
    config["scrape_configs"] = scrape_configs
    return config


class LocalPrometheus:
    """A running Prometheus server scraping ``targets`` with the project's rules and consoles.

    Parameters
    ----------
    targets : job name -> ``host:port`` list (jobs of deploy/prometheus/prometheus.yml).
    port : listen port on 127.0.0.1.
    work_dir : where its configuration, data and log go.
    binary, deploy_dir : the server binary and the deploy/prometheus directory (defaults: found here).
    scrape_interval_s : scrape and rule evaluation interval (s) instead of the configuration's (tests).
    """

    def __init__(self, targets: Mapping[str, Sequence[str]], port: int, work_dir: Path,
                 binary: str | None = None, deploy_dir: Path = DEPLOY_DIR,
                 scrape_interval_s: float | None = None) -> None:
        import yaml

        self.binary = binary or find_binary()
        if self.binary is None:
            raise PrometheusUnavailable(f"no prometheus binary on PATH; {INSTALL_HINT}")
        if not (deploy_dir / CONFIG_FILE).is_file():
            raise PrometheusUnavailable(f"{deploy_dir / CONFIG_FILE} not found (the demo's Prometheus needs a "
                                        "source checkout of fraudstream)")
        self.port = port
        self.work_dir = work_dir
        self.log_path = work_dir / "prometheus.log"
        self.config_path = work_dir / "prometheus.yml"
        config = local_config(yaml.safe_load((deploy_dir / CONFIG_FILE).read_text()), targets, deploy_dir)
        if scrape_interval_s is not None:
            interval = f"{scrape_interval_s:g}s"
            config["global"] = {**config.get("global", {}), "scrape_interval": interval,
                                "evaluation_interval": interval, "scrape_timeout": interval}
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.argv = [self.binary, f"--config.file={self.config_path}",
                     f"--storage.tsdb.path={work_dir / 'prometheus-data'}",
                     f"--storage.tsdb.retention.time={RETENTION}",
                     f"--web.listen-address=127.0.0.1:{port}",
                     f"--web.console.templates={deploy_dir / CONSOLES_DIR}",
                     f"--web.console.libraries={deploy_dir / CONSOLE_LIBRARIES_DIR}"]
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def console_url(self) -> str:
        return f"{self.url}/consoles/{MAIN_CONSOLE}"

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> LocalPrometheus:
        """Start the server and wait until it is ready; raise :class:`PrometheusUnavailable` quoting its log."""
        from fraudstream.stream.embedded import log_tail, spawn_logged

        self.process = spawn_logged(self.argv, self.log_path)
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise PrometheusUnavailable(f"prometheus did not start (log {self.log_path}):\n"
                                            f"{log_tail(self.log_path)}")
            time.sleep(READY_POLL_S)
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=HTTP_TIMEOUT_S) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        from fraudstream.stream.embedded import stop_process_group

        if self.process is not None:
            stop_process_group(self.process, signal.SIGTERM, STOP_GRACE_S)

    def __enter__(self) -> LocalPrometheus:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
