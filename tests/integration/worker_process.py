"""A ``fraudstream worker`` subprocess for the integration tests: started with a settings object, read back
through its log and its ``/metrics`` page."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

#: Longest wait (s) for a worker to report its partitions.
STARTUP_TIMEOUT_S = 90.0
READY_LINE = "partitions assigned:"  # stream.broker.consumer.PARTITIONS_ASSIGNED_LOG


class Worker:
    """One ``fraudstream worker`` subprocess with its log file."""

    def __init__(self, settings, model_dir: Path, log_path: Path, metrics_port: int = 0) -> None:
        env = dict(os.environ)
        for f, value in settings.model_dump().items():
            env[f"FRAUDSTREAM_WORKER_{f.upper()}"] = str(value)
        env.update(FRAUDSTREAM_WORKER_MODEL_DIR=str(model_dir), FRAUDSTREAM_WORKER_METRICS_PORT=str(metrics_port),
                   FRAUDSTREAM_WORKER_WEB_PORT="0", FRAUDSTREAM_WORKER_MODEL_POLL_S="0.5")
        self.log_path = log_path
        self.log = open(log_path, "a")
        self.proc = subprocess.Popen([sys.executable, "-m", "fraudstream.cli.main", "worker"], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, count: int = 1) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while self.text().count(READY_LINE) < count:
            assert self.proc.poll() is None, f"worker exited:\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"worker not ready:\n{self.text()[-3000:]}"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def metric_samples(port: int, name: str) -> dict[str, float]:
    """Samples of one metric of a worker's /metrics page: label text -> value."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, value = line[len(name):].rsplit(" ", 1)
            out[labels] = float(value)
    return out
