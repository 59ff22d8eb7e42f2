"""The demo's live summary, read from the worker's Prometheus text exposition: pure functions, no HTTP.

From one scrape of ``/metrics`` (:func:`parse_worker_metrics`): decisions so far by outcome, dead-lettered events,
re-delivered duplicates, and the p99 end-to-end latency (s) from the cumulative histogram buckets.  From two
scrapes ``interval_s`` apart: decisions per second (:func:`decision_rate`, tx/s) and the p99 latency of the
decisions made in between (:meth:`MetricsSnapshot.latency_p99_since`), end to end and the worker's own part (from
its fetch of the record: :meth:`MetricsSnapshot.worker_p99_since`).  :func:`format_live_summary` puts them on
one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: Quantile of the end-to-end latency shown in the live summary.
LATENCY_QUANTILE = 0.99
#: Metric names, without the worker's prefix (see ``fraudstream.stream.metrics.PREFIX``).
DECISIONS_SAMPLE = "decisions_total"
LATENCY_BUCKET_SAMPLE = "end_to_end_latency_seconds_bucket"
WORKER_LATENCY_BUCKET_SAMPLE = "worker_latency_seconds_bucket"
DLQ_SAMPLE = "dlq_total"
DUPLICATES_SAMPLE = "duplicates_total"
#: Labels of the decisions counter holding the outcome (ALLOW, BLOCK, REVIEW) and the deciding cascade stage.
DECISION_LABEL, STAGE_LABEL = "decision", "stage"
#: The stage whose own decisions the summary shows apart: the heavy model's share of the work.
HEAVY_STAGE = "HEAVY"
MS_PER_S = 1000.0


@dataclass(frozen=True)
class MetricsSnapshot:
    """Decisions so far by outcome, their total, and the p99 end-to-end latency (s, nan when unknown).

    ``latency_buckets`` maps each bucket's upper bound (s, ``inf`` included) to its cumulative count;
    ``dead_lettered`` and ``duplicates`` count events sent to the dead-letter topic (all reasons) and re-delivered
    transactions answered with their stored decision; ``heavy`` holds the decisions the heavy stage made, by
    outcome (part of ``decisions``); ``worker_latency_buckets`` the same as ``latency_buckets`` for the worker's
    own part of the latency (empty from a worker that does not export it).
    """

    decisions: dict[str, float]
    latency_p99_s: float
    latency_buckets: dict[float, float]
    dead_lettered: float = 0.0
    duplicates: float = 0.0
    heavy: dict[str, float] = field(default_factory=dict)
    worker_latency_buckets: dict[float, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.decisions.values())

    def latency_p99_since(self, earlier: MetricsSnapshot | None) -> float:
        """p99 latency (s) of the decisions made after ``earlier`` (all of them when None)."""
        if earlier is None:
            return self.latency_p99_s
        return _quantile_since(self.latency_buckets, earlier.latency_buckets)

    def worker_p99_since(self, earlier: MetricsSnapshot | None) -> float:
        """p99 (s) of the worker's own part of the latency since ``earlier`` (all when None; nan when unknown)."""
        return _quantile_since(self.worker_latency_buckets,
                               earlier.worker_latency_buckets if earlier is not None else {})


def _quantile_since(buckets: dict[float, float], earlier: dict[float, float]) -> float:
    return histogram_quantile(LATENCY_QUANTILE, [(b, c - earlier.get(b, 0.0)) for b, c in buckets.items()])


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Quantile from cumulative ``(upper bound, count)`` buckets, linear within a bucket (as Prometheus does).

    The first bucket starts at 0; a quantile that falls in the ``+Inf`` bucket is the highest finite bound.
    Returns nan when there are no observations.
    """
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            width = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / width if width else 1.0)
        lower_bound, lower_count = bound, count
    return lower_bound


def parse_worker_metrics(text: str) -> MetricsSnapshot:
    """Pick the demo's figures out of the worker's Prometheus text exposition.

    Decisions are summed over the other labels (cascade stage) per lower-cased outcome; latency buckets are
    summed per upper bound; dead letters over their reasons.
    """
    from prometheus_client.parser import text_string_to_metric_families

    from fraudstream.stream.metrics import PREFIX

    decisions: dict[str, float] = {}
    heavy: dict[str, float] = {}
    buckets: dict[float, float] = {}
    worker_buckets: dict[float, float] = {}
    histograms = {f"{PREFIX}{LATENCY_BUCKET_SAMPLE}": buckets,
                  f"{PREFIX}{WORKER_LATENCY_BUCKET_SAMPLE}": worker_buckets}
    dead_lettered = duplicates = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{PREFIX}{DECISIONS_SAMPLE}":
                outcome = str(sample.labels.get(DECISION_LABEL, "?")).lower()
                decisions[outcome] = decisions.get(outcome, 0.0) + sample.value
                if sample.labels.get(STAGE_LABEL) == HEAVY_STAGE:
                    heavy[outcome] = heavy.get(outcome, 0.0) + sample.value
            elif sample.name in histograms:  # cumulative buckets, summed over the series' other labels
                into = histograms[sample.name]
                bound = float(sample.labels["le"])
                into[bound] = into.get(bound, 0.0) + sample.value
            elif sample.name == f"{PREFIX}{DLQ_SAMPLE}":
                dead_lettered += sample.value
            elif sample.name == f"{PREFIX}{DUPLICATES_SAMPLE}":
                duplicates += sample.value
    return MetricsSnapshot(decisions, histogram_quantile(LATENCY_QUANTILE, list(buckets.items())), buckets,
                           dead_lettered, duplicates, heavy, worker_buckets)


def decision_rate(previous: MetricsSnapshot | None, current: MetricsSnapshot, interval_s: float) -> float:
    """Decisions per second (tx/s) between two scrapes ``interval_s`` apart; 0 without an earlier scrape."""
    return (current.total - previous.total) / interval_s if previous is not None else 0.0


def format_live_summary(previous: MetricsSnapshot | None, current: MetricsSnapshot | None, interval_s: float,
                        sent: int, labels_sent: int, phase: str = "") -> str:
    """One line: the replay phase (e.g. ``warm-up``), transactions and labels replayed, decisions by outcome (and
    those of the heavy stage), dead letters and duplicates so far, tx/s and p99 latency (ms) since ``previous``,
    with the worker's own part when the worker exports it (``current`` None = the metrics could not be read)."""
    head = f"[{phase}] " if phase else ""
    if current is None:
        return f"{head}replayed {sent:,} tx, {labels_sent:,} labels; worker metrics unavailable"
    rate = decision_rate(previous, current, interval_s)
    outcomes = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(current.decisions.items())) or "none yet"
    if current.heavy:
        outcomes += " (heavy stage: " + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(current.heavy.items())) + ")"
    p99_s = current.latency_p99_since(previous)
    p99 = f"{p99_s * MS_PER_S:,.0f} ms" if not math.isnan(p99_s) else "n/a"
    worker_p99_s = current.worker_p99_since(previous)
    if not math.isnan(worker_p99_s):
        p99 += f" (in the worker {worker_p99_s * MS_PER_S:,.0f} ms)"
    return (f"{head}replayed {sent:,} tx, {labels_sent:,} labels | decisions: {outcomes} | "
            f"dead-lettered {current.dead_lettered:,.0f}, duplicates {current.duplicates:,.0f} | "
            f"{rate:,.0f} tx/s | p99 latency {p99}")
