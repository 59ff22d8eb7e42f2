"""Prometheus metrics of the stream worker, in a registry of its own.

Histograms of per-event values (latency, scores) are filled a whole micro-batch at a time with numpy
(:class:`BatchHistogram`), because calling ``Histogram.observe`` once per event costs more than scoring it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from fraudstream.detectors.cascade.types import Decision, Stage
from fraudstream.detectors.drift import DriftWindow, ReferenceHistogram

if TYPE_CHECKING:
    from fraudstream.stream.core.batch import BatchOutcome

PREFIX = "fraudstream_"

#: End-to-end latency buckets (s): broker arrival of a transaction -> its decision produced.
#: Fine from 1 to 50 ms, where the latency targets are (p50 <= 5 ms, p99 <= 20 ms at 1,000 tx/s; <= 50 ms at 5,000),
#: so that quantiles there are not interpolated across a wide bucket.
LATENCY_BUCKETS_S = (0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03,
                     0.04, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
#: Label delay buckets (s): transaction -> its label known; 1 h to 60 days (chargebacks take days to weeks).
LABEL_DELAY_BUCKETS_S = (3600.0, 6 * 3600.0, 86400.0, 2 * 86400.0, 3 * 86400.0, 5 * 86400.0, 7 * 86400.0,
                         10 * 86400.0, 14 * 86400.0, 21 * 86400.0, 30 * 86400.0, 60 * 86400.0)
#: Score buckets: scores are probabilities in [0, 1].
SCORE_BUCKETS = tuple(np.round(np.linspace(0.05, 1.0, 20), 2).tolist())
#: Micro-batch size buckets (events).
BATCH_SIZE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000)
#: Batch processing time buckets (s).
BATCH_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class BatchHistogram(Collector):
    """A histogram (optionally with one label) that takes a whole array of observations at once.

    Parameters
    ----------
    name, documentation : metric name (without ``_bucket`` etc.) and help text.
    buckets : upper bounds, increasing; ``+Inf`` is added.
    label : name of the one label, or ``None``.
    """

    def __init__(self, name: str, documentation: str, buckets: Iterable[float], label: str | None = None) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = np.asarray(sorted(buckets), dtype=np.float64)
        self.label = label
        self._lock = threading.Lock()
        self._counts: dict[str, np.ndarray] = {}
        self._sums: dict[str, float] = {}

    def observe_many(self, values: np.ndarray, label_value: str = "") -> None:
        """Add every finite value of ``values`` (nan values, e.g. a stage that did not run, are skipped)."""
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return
        # bucket i counts values <= bounds[i]; the last slot is +Inf.
        slots = np.searchsorted(self.bounds, values, side="left")
        per_slot = np.bincount(slots, minlength=self.bounds.size + 1)
        with self._lock:
            counts = self._counts.setdefault(label_value, np.zeros(self.bounds.size + 1, dtype=np.int64))
            counts += per_slot
            self._sums[label_value] = self._sums.get(label_value, 0.0) + float(values.sum())

    def count(self, label_value: str = "") -> int:
        with self._lock:
            counts = self._counts.get(label_value)
            return 0 if counts is None else int(counts.sum())

    def collect(self) -> Iterable[HistogramMetricFamily]:
        labels = [self.label] if self.label else None
        family = HistogramMetricFamily(self.name, self.documentation, labels=labels)
        with self._lock:
            snapshot = {k: (v.copy(), self._sums[k]) for k, v in self._counts.items()}
        for label_value, (counts, total) in snapshot.items():
            cumulative = np.cumsum(counts)
            buckets = [(repr(float(b)), int(c)) for b, c in zip(self.bounds, cumulative[:-1])]
            buckets.append(("+Inf", int(cumulative[-1])))
            family.add_metric([label_value] if labels else [], buckets, total)
        yield family

    def describe(self) -> Iterable[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=[self.label] if self.label else None)


class WorkerMetrics:
    """Every metric of the worker, registered in ``self.registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.decisions = Counter(f"{PREFIX}decisions_total", "Decisions made, by decision and cascade stage",
                                 ["decision", "stage"], registry=r)
        self.dlq = Counter(f"{PREFIX}dlq_total", "Events sent to the dead-letter topic, by reason", ["reason"],
                           registry=r)
        self.duplicates = Counter(f"{PREFIX}duplicates_total",
                                  "Re-delivered transactions answered with their stored decision", registry=r)
        self.labels = Counter(f"{PREFIX}labels_total", "Label events learned into terminal state", registry=r)
        self.duplicate_labels = Counter(f"{PREFIX}duplicate_labels_total", "Re-delivered label events skipped",
                                        registry=r)
        self.batch_errors = Counter(f"{PREFIX}batch_errors_total", "Micro-batches that failed and were retried",
                                    registry=r)
        self.state_conflicts = Counter(f"{PREFIX}state_conflicts_total",
                                       "Batches recomputed because shared state changed under them", registry=r)
        self.model_reloads = Counter(f"{PREFIX}model_reloads_total", "Model reload attempts, by outcome",
                                     ["outcome"], registry=r)
        self.review_items = Counter(f"{PREFIX}review_items_total", "Items written to the review queue", registry=r)
        self.reviews_over_budget = Counter(f"{PREFIX}reviews_over_budget_total",
                                           "REVIEW decisions allowed because the day's review budget was spent",
                                           registry=r)
        self.review_budget = Gauge(f"{PREFIX}review_budget_cases",
                                   "Review cases a UTC day may open (the review budget; 0 = none)", registry=r)
        self.review_cases_opened = Gauge(f"{PREFIX}review_cases_opened",
                                         "Review cases opened on the latest UTC event day decided (with a budget)",
                                         registry=r)
        #: the UTC event day ``review_cases_opened`` shows.
        self._review_day = -1
        self.consumer_lag = Gauge(f"{PREFIX}consumer_lag_messages", "Messages not yet processed, per partition",
                                  ["topic", "partition"], registry=r)
        self.model_info = Gauge(f"{PREFIX}model_info", "The model version in use (value 1)", ["version"],
                                registry=r)
        self.batch_size = Histogram(f"{PREFIX}batch_size_events", "Events per micro-batch",
                                    buckets=BATCH_SIZE_BUCKETS, registry=r)
        self.batch_seconds = Histogram(f"{PREFIX}batch_processing_seconds",
                                       "Time to process one micro-batch, fetch excluded (s)",
                                       buckets=BATCH_SECONDS_BUCKETS, registry=r)
        self.latency = BatchHistogram(f"{PREFIX}end_to_end_latency_seconds",
                                      "Kafka record timestamp of a transaction -> its decision delivered (s)",
                                      LATENCY_BUCKETS_S)
        self.worker_latency = BatchHistogram(
            f"{PREFIX}worker_latency_seconds",
            "A transaction record returned by this worker's fetch -> its decision delivered (s): the worker's own "
            "part of the end-to-end latency, event-time hold-back included", LATENCY_BUCKETS_S)
        self.scores = BatchHistogram(f"{PREFIX}score", "Scores of decided transactions, by score kind",
                                     SCORE_BUCKETS, label="kind")
        self.labelled_decisions = Counter(
            f"{PREFIX}labelled_decisions_total",
            "Labels joined to the stored decision of their transaction, by model version, decision and label "
            "(fraud|legit)", ["model_version", "decision", "label"], registry=r)
        self.label_delay = BatchHistogram(f"{PREFIX}label_delay_seconds",
                                          "Label known_at - transaction time (s), by label source",
                                          LABEL_DELAY_BUCKETS_S, label="source")
        self.drift_psi = Gauge(f"{PREFIX}drift_psi",
                               "Population stability index of the recent events against the training reference, "
                               "by model version and signal", ["model_version", "signal"], registry=r)
        self.redis_up = Gauge(f"{PREFIX}redis_up", "1 when the state store (Redis) answered its last health check",
                              registry=r)
        self.broker_up = Gauge(f"{PREFIX}broker_up", "1 when the Kafka broker answered its last health check",
                               registry=r)
        self.last_batch_timestamp = Gauge(f"{PREFIX}last_batch_timestamp_seconds",
                                          "Wall time of the last micro-batch delivered (epoch s; start time before)",
                                          registry=r)
        self.held_back_events = Gauge(f"{PREFIX}held_back_events",
                                      "Transactions fetched and held back by the event-time watermark", registry=r)
        self.late_events = Counter(f"{PREFIX}late_events_total",
                                   "Transactions more than the event-time slack late, decided at once", registry=r)
        self.consumer_restarts = Counter(f"{PREFIX}consumer_restarts_total",
                                         "Transaction consumers replaced because their fetches stopped delivering "
                                         "while partitions had backlog", registry=r)
        r.register(self.latency)
        r.register(self.worker_latency)
        r.register(self.scores)
        r.register(self.label_delay)
        self._model_version: str | None = None
        self._drift: DriftWindow | None = None

    def set_model_version(self, version: str, drift_reference: dict[str, ReferenceHistogram] | None = None
                          ) -> None:
        """The model in use; drift is measured from now on against its ``drift_reference`` (none: no drift)."""
        if self._model_version is not None and self._model_version != version:
            self.model_info.remove(self._model_version)
            if self._drift is not None:
                for signal in self._drift.reference:
                    try:
                        self.drift_psi.remove(self._model_version, signal)
                    except KeyError:  # never set: the window had not filled up
                        pass
        self._model_version = version
        self.model_info.labels(version=version).set(1)
        self._drift = DriftWindow(drift_reference) if drift_reference else None

    def count_outcome(self, outcome: BatchOutcome) -> None:
        """Count what one batch did: dead letters, duplicates, labels, review items, decisions and scores."""
        for reason in outcome.dlq_reasons:
            self.dlq.labels(reason=reason).inc()
        if outcome.duplicates:
            self.duplicates.inc(outcome.duplicates)
        if outcome.labels_learned:
            self.labels.inc(outcome.labels_learned)
        if outcome.duplicate_labels:
            self.duplicate_labels.inc(outcome.duplicate_labels)
        if outcome.review_items:
            self.review_items.inc(outcome.review_items)
        if outcome.reviews_over_budget:
            self.reviews_over_budget.inc(outcome.reviews_over_budget)
        if outcome.review_cases_opened:
            day = max(outcome.review_cases_opened)
            if day >= self._review_day:
                self._review_day = day
                self.review_cases_opened.set(outcome.review_cases_opened[day])
        truth = outcome.label_truth
        if truth is not None:
            for version, decision, label, n in truth.counts():
                self.labelled_decisions.labels(model_version=version, decision=decision, label=label).inc(n)
            for source, delays in truth.delays_by_source().items():
                self.label_delay.observe_many(delays, source)
        scored = outcome.scored
        if scored is None:
            return
        pairs, counts = np.unique(scored.decision.astype(np.int64) * 16 + scored.stage.astype(np.int64),
                                  return_counts=True)
        for pair, n in zip(pairs.tolist(), counts.tolist()):
            self.decisions.labels(decision=Decision(pair // 16).name, stage=Stage(pair % 16).name).inc(n)
        self.scores.observe_many(scored.risk, "risk")
        for kind, values in scored.scores.items():
            self.scores.observe_many(values, kind)
        if self._drift is not None and scored.drift_signals:
            self._drift.add(scored.drift_signals)
            for signal, value in self._drift.psi().items():
                if np.isfinite(value):
                    self.drift_psi.labels(model_version=self._model_version, signal=signal).set(value)

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Expose the registry over HTTP on ``addr:port`` (port 0 = do nothing; loopback unless told otherwise)."""
        if port:
            start_http_server(port, addr=addr, registry=self.registry)
