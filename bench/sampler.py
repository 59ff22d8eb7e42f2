"""Samples of a running worker over time: what was sent and decided, its consumer lag, its RSS, and afterwards the
event-to-decision latency of the decisions of each interval.

A :class:`Sampler` thread takes one sample every ``every_s`` seconds while a replay runs (and one at its start and
one at its end): elapsed s, transactions sent (from the replay's ``on_progress``), decisions and the summed
``fraudstream_consumer_lag_messages`` (both scraped from the worker's /metrics), RSS MB.  The latencies are read
from the decisions topic once the run is over; :func:`with_latency` gives each interval the p50 / p99 of the
decisions whose Kafka timestamp falls in it (since the sample before).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from fraudstream.bench.common import MS_PER_S, percentiles_ms, rss_mb

DECISIONS_METRIC = "fraudstream_decisions_total"
LAG_METRIC = "fraudstream_consumer_lag_messages"
MAX_EVERY_S = 30.0
SAMPLES_PER_RUN = 10


def every_for(seconds: float) -> float:
    """The pause between two samples of a run of ``seconds``: a tenth of it, at least 1 s and at most 30 s."""
    return min(MAX_EVERY_S, max(1.0, seconds / SAMPLES_PER_RUN))


class Sampler:
    """Samples ``worker`` (a :class:`~fraudstream.bench.stream_runs.WorkerProcess`) every ``every_s`` seconds."""

    def __init__(self, worker: Any, every_s: float) -> None:
        self.worker, self.every_s = worker, every_s
        self.sent = 0
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._t0 = 0.0

    def on_progress(self, sent: int, labels: int) -> None:
        self.sent = sent

    def start(self) -> Sampler:
        self._t0 = time.time()
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> list[dict[str, float]]:
        """Stop the thread and take the last sample."""
        self._stop.set()
        self._thread.join()
        self.sample()
        return self.samples

    def sample(self) -> None:
        now = time.time()
        self.samples.append({"elapsed_s": now - self._t0, "at_ms": now * MS_PER_S, "sent": self.sent,
                             "decided": self.worker.metric(DECISIONS_METRIC), "lag": self.worker.metric(LAG_METRIC),
                             "rss_mb": rss_mb(self.worker.proc.pid)})

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()


def with_latency(samples: list[dict[str, float]], decided_at_ms: np.ndarray, latency_ms: np.ndarray,
                 broker_ms: np.ndarray | None = None, worker_ms: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Each sample with the count and the p50 / p99 (ms) of the decisions timestamped since the sample before
    (None when there are none: the first sample, an interval without decisions), and the p50 of the latency's
    broker and worker parts where given (see :func:`~fraudstream.bench.stream_runs.split_latency`)."""
    out: list[dict[str, Any]] = []
    for k, sample in enumerate(samples):
        since = samples[k - 1]["at_ms"] if k else sample["at_ms"]
        inside = (decided_at_ms >= since) & (decided_at_ms < sample["at_ms"])
        p50, p99 = percentiles_ms(latency_ms[inside], (50, 99)) if inside.any() else (None, None)
        parts = {f"{name}_p50_ms": _median_or_none(values[inside]) if values is not None else None
                 for name, values in (("broker", broker_ms), ("worker", worker_ms))}
        out.append({**sample, "interval_decisions": int(inside.sum()), "p50_ms": p50, "p99_ms": p99, **parts})
    return out


def _median_or_none(values: np.ndarray) -> float | None:
    value = percentiles_ms(values, (50,))[0]
    return None if np.isnan(value) else value
