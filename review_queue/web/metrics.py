"""Prometheus metrics of the review page, on its own registry and ``/metrics``.

``fraudstream_review_pending_cases``, ``fraudstream_review_oldest_case_age_seconds`` and
``fraudstream_review_overdue_cases`` (gauges, refreshed from Redis by the service every few seconds) and
``fraudstream_review_verdicts_total{analyst,verdict}`` (counter, one per item given a verdict on this page).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

PREFIX = "fraudstream_review_"


class ReviewMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.pending_cases = Gauge(f"{PREFIX}pending_cases", "Open review cases (cards) waiting for a verdict",
                                   registry=r)
        self.oldest_case_age = Gauge(f"{PREFIX}oldest_case_age_seconds", "Age of the oldest open case (s)",
                                     registry=r)
        self.overdue_cases = Gauge(f"{PREFIX}overdue_cases", "Open cases past their SLA", registry=r)
        self.verdicts = Counter(f"{PREFIX}verdicts_total", "Items given a verdict, by analyst and verdict",
                                ["analyst", "verdict"], registry=r)

    def update(self, stats: dict[str, Any]) -> None:
        self.pending_cases.set(stats["cases_waiting"])
        self.oldest_case_age.set(stats["oldest_case_age_s"])
        self.overdue_cases.set(stats["overdue_cases"])

    def render(self) -> bytes:
        return generate_latest(self.registry)
