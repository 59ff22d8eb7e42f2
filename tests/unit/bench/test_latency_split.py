"""The latency table's split of each decision's latency at its transaction's arrival at a bare consumer."""

import numpy as np
import pytest

from fraudstream.bench.common import percentiles_ms
from fraudstream.bench.sampler import with_latency
from fraudstream.bench.stream_runs import split_latency


def test_split_adds_up_to_the_latency_and_marks_unseen_transactions():
    # transaction 1: produced at 1,000 ms, read by the bare consumer at 1,015, decided at 1,020
    # transaction 2: produced at 1,010, read at 1,012, decided at 1,030; transaction 3 never seen by the watcher
    decided_at = np.array([1_020.0, 1_030.0, 1_040.0])
    latency = np.array([20.0, 20.0, 25.0])
    broker, worker = split_latency(latency, decided_at, np.array([1, 2, 3]), {1: 1_015.0, 2: 1_012.0})
    assert broker[:2].tolist() == [15.0, 2.0]
    assert worker[:2].tolist() == [5.0, 18.0]
    assert np.isnan(broker[2]) and np.isnan(worker[2])
    assert (broker + worker)[:2].tolist() == latency[:2].tolist()


def test_percentiles_leave_out_what_was_not_measured():
    assert percentiles_ms(np.array([1.0, np.nan, 3.0]), (50,)) == [2.0]
    assert np.isnan(percentiles_ms(np.array([np.nan]), (50,))[0])


def test_each_sample_gets_the_median_of_the_parts_of_its_own_interval():
    samples = [{"at_ms": 1_000.0}, {"at_ms": 2_000.0}, {"at_ms": 3_000.0}]
    decided_at = np.array([1_100.0, 1_200.0, 2_500.0])
    latency = np.array([10.0, 30.0, 50.0])
    broker = np.array([6.0, 20.0, np.nan])
    worker = np.array([4.0, 10.0, np.nan])
    out = with_latency(samples, decided_at, latency, broker, worker)
    assert out[0]["broker_p50_ms"] is None and out[0]["p50_ms"] is None
    assert out[1]["p50_ms"] == pytest.approx(20.0)
    assert out[1]["broker_p50_ms"] == pytest.approx(13.0) and out[1]["worker_p50_ms"] == pytest.approx(7.0)
    assert out[2]["p50_ms"] == pytest.approx(50.0)
    assert out[2]["broker_p50_ms"] is None and out[2]["worker_p50_ms"] is None
    assert with_latency(samples, decided_at, latency)[1]["broker_p50_ms"] is None
