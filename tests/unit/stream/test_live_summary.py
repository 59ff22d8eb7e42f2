"""The demo's live summary from the worker's metrics text: decisions by outcome, tx/s, p99 latency."""

import math

import numpy as np
import pytest

from fraudstream.stream.live_summary import (
    decision_rate,
    format_live_summary,
    histogram_quantile,
    parse_worker_metrics,
)

# First scrape: 1000 decisions; latency buckets 500 / 900 / 980 / 1000 at 10 ms / 50 ms / 100 ms / 500 ms.
# Dead letters (9 over two reasons) and duplicates (11) are counted; the score histogram is ignored.
FIRST = """\
# HELP fraudstream_decisions_total Decisions made, by decision and cascade stage
# TYPE fraudstream_decisions_total counter
fraudstream_decisions_total{decision="ALLOW",stage="RULES"} 600.0
fraudstream_decisions_total{decision="ALLOW",stage="LIGHT"} 300.0
fraudstream_decisions_total{decision="BLOCK",stage="HEAVY"} 40.0
fraudstream_decisions_total{decision="REVIEW",stage="HEAVY"} 60.0
# HELP fraudstream_dlq_total Events sent to the dead-letter topic, by reason
# TYPE fraudstream_dlq_total counter
fraudstream_dlq_total{reason="bad_json"} 7.0
fraudstream_dlq_total{reason="missing_field"} 2.0
# HELP fraudstream_duplicates_total Re-delivered transactions answered with their stored decision
# TYPE fraudstream_duplicates_total counter
fraudstream_duplicates_total 11.0
# HELP fraudstream_end_to_end_latency_seconds Kafka record timestamp of a transaction -> its decision (s)
# TYPE fraudstream_end_to_end_latency_seconds histogram
fraudstream_end_to_end_latency_seconds_bucket{le="0.01"} 500.0
fraudstream_end_to_end_latency_seconds_bucket{le="0.05"} 900.0
fraudstream_end_to_end_latency_seconds_bucket{le="0.1"} 980.0
fraudstream_end_to_end_latency_seconds_bucket{le="0.5"} 1000.0
fraudstream_end_to_end_latency_seconds_bucket{le="+Inf"} 1000.0
fraudstream_end_to_end_latency_seconds_count 1000.0
fraudstream_end_to_end_latency_seconds_sum 25.0
# HELP fraudstream_score Scores of decided transactions, by score kind
# TYPE fraudstream_score histogram
fraudstream_score_bucket{kind="risk",le="0.05"} 3.0
fraudstream_score_bucket{kind="risk",le="+Inf"} 1000.0
fraudstream_score_count{kind="risk"} 1000.0
fraudstream_score_sum{kind="risk"} 40.0
"""

# Second scrape, 4 s later: 1040 more decisions (allow +1000, block +10, review +30), of which 1000 within 10 ms,
# 30 more within 50 ms and the last 10 within 100 ms.
SECOND = """\
# TYPE fraudstream_decisions_total counter
fraudstream_decisions_total{decision="ALLOW",stage="RULES"} 1400.0
fraudstream_decisions_total{decision="ALLOW",stage="LIGHT"} 500.0
fraudstream_decisions_total{decision="BLOCK",stage="HEAVY"} 50.0
fraudstream_decisions_total{decision="REVIEW",stage="HEAVY"} 90.0
# TYPE fraudstream_end_to_end_latency_seconds histogram
fraudstream_end_to_end_latency_seconds_bucket{le="0.01"} 1500.0
fraudstream_end_to_end_latency_seconds_bucket{le="0.05"} 1930.0
fraudstream_end_to_end_latency_seconds_bucket{le="0.1"} 2020.0
fraudstream_end_to_end_latency_seconds_bucket{le="0.5"} 2040.0
fraudstream_end_to_end_latency_seconds_bucket{le="+Inf"} 2040.0
fraudstream_end_to_end_latency_seconds_count 2040.0
fraudstream_end_to_end_latency_seconds_sum 40.0
# TYPE fraudstream_worker_latency_seconds histogram
fraudstream_worker_latency_seconds_bucket{le="0.005"} 2000.0
fraudstream_worker_latency_seconds_bucket{le="0.01"} 2040.0
fraudstream_worker_latency_seconds_bucket{le="+Inf"} 2040.0
fraudstream_worker_latency_seconds_count 2040.0
fraudstream_worker_latency_seconds_sum 8.0
"""


def test_decisions_are_summed_over_stages_per_lower_case_outcome():
    snapshot = parse_worker_metrics(FIRST)
    assert snapshot.decisions == {"allow": 900.0, "block": 40.0, "review": 60.0}
    assert snapshot.heavy == {"block": 40.0, "review": 60.0}
    assert snapshot.total == 1000.0
    assert (snapshot.dead_lettered, snapshot.duplicates) == (9.0, 11.0)
    assert snapshot.latency_buckets == {0.01: 500.0, 0.05: 900.0, 0.1: 980.0, 0.5: 1000.0, math.inf: 1000.0}


def test_p99_interpolates_inside_the_bucket_that_holds_rank_990_of_1000():
    # rank 0.99 * 1000 = 990 falls in (0.1 s, 0.5 s] (980 -> 1000): 0.1 + 0.4 * (990 - 980) / 20 = 0.3 s
    assert parse_worker_metrics(FIRST).latency_p99_s == pytest.approx(0.3)


def test_p99_between_two_scrapes_uses_only_the_new_decisions():
    first, second = parse_worker_metrics(FIRST), parse_worker_metrics(SECOND)
    # new decisions per bucket: 1000 / 1030 / 1040 / 1040; rank 0.99 * 1040 = 1029.6 falls in (0.01 s, 0.05 s]
    assert second.latency_p99_since(first) == pytest.approx(0.01 + 0.04 * 29.6 / 30)
    # over all 2040: rank 2019.6 falls in (0.05 s, 0.1 s] (1930 -> 2020)
    assert second.latency_p99_since(None) == pytest.approx(0.05 + 0.05 * 89.6 / 90)


def test_worker_part_p99_uses_its_own_buckets_and_is_unknown_without_them():
    first, second = parse_worker_metrics(FIRST), parse_worker_metrics(SECOND)
    assert first.worker_latency_buckets == {}
    assert math.isnan(first.worker_p99_since(None))
    # all 2040 are new since the first scrape (which had none): rank 2019.6 in (0.005 s, 0.01 s] (2000 -> 2040)
    assert second.worker_p99_since(first) == pytest.approx(0.005 + 0.005 * 19.6 / 40)


def test_decision_rate_is_new_decisions_per_second():
    first, second = parse_worker_metrics(FIRST), parse_worker_metrics(SECOND)
    assert decision_rate(first, second, 4.0) == pytest.approx(1040 / 4.0)
    assert decision_rate(None, second, 4.0) == 0.0


def test_quantile_edge_cases():
    assert math.isnan(histogram_quantile(0.99, []))
    assert math.isnan(histogram_quantile(0.99, [(0.1, 0.0), (math.inf, 0.0)]))
    # rank 99 is beyond the last finite bucket: the highest finite bound is returned
    assert histogram_quantile(0.99, [(0.1, 10.0), (0.2, 20.0), (math.inf, 100.0)]) == 0.2
    # an empty bucket at the rank boundary (width 0) returns its upper bound
    assert histogram_quantile(0.5, [(0.1, 50.0), (0.2, 50.0), (math.inf, 100.0)]) == pytest.approx(0.1)


def test_summary_line():
    first, second = parse_worker_metrics(FIRST), parse_worker_metrics(SECOND)
    line = format_live_summary(first, second, 4.0, sent=12_345, labels_sent=678, phase="paced 1,000 tx/s")
    assert line == ("[paced 1,000 tx/s] replayed 12,345 tx, 678 labels | decisions: allow 1,900, block 50, "
                    "review 90 (heavy stage: block 50, review 90) | dead-lettered 0, duplicates 0 | 260 tx/s | "
                    "p99 latency 49 ms (in the worker 7 ms)")
    assert format_live_summary(None, first, 4.0, 10, 0, phase="warm-up").startswith("[warm-up] replayed 10 tx")
    assert format_live_summary(None, first, 4.0, 10, 0).endswith(
        "| dead-lettered 9, duplicates 11 | 0 tx/s | p99 latency 300 ms")
    assert format_live_summary(None, None, 4.0, 5, 2) == "replayed 5 tx, 2 labels; worker metrics unavailable"
    empty = parse_worker_metrics("")
    assert format_live_summary(None, empty, 4.0, 0, 0).endswith(
        "decisions: none yet | dead-lettered 0, duplicates 0 | 0 tx/s | p99 latency n/a")


def test_parses_what_the_worker_exposes():
    from prometheus_client import generate_latest

    from fraudstream.stream.metrics import WorkerMetrics

    metrics = WorkerMetrics()
    metrics.decisions.labels(decision="BLOCK", stage="HEAVY").inc(3)
    metrics.decisions.labels(decision="ALLOW", stage="RULES").inc(97)
    metrics.latency.observe_many(np.array([0.004] * 99 + [0.3]))
    metrics.dlq.labels(reason="invalid_json").inc(2)
    metrics.duplicates.inc(5)
    snapshot = parse_worker_metrics(generate_latest(metrics.registry).decode())
    assert snapshot.decisions == {"allow": 97.0, "block": 3.0}
    assert (snapshot.dead_lettered, snapshot.duplicates) == (2.0, 5.0)
    # 99 of 100 within the bucket that holds 4 ms: rank 99 is its upper end
    from fraudstream.stream.metrics import LATENCY_BUCKETS_S

    assert snapshot.latency_p99_s == pytest.approx(min(b for b in LATENCY_BUCKETS_S if b >= 0.004))
