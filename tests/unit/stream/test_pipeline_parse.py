"""Parsing of raw events into transactions, labels and dead letters; decision records; batch histograms."""

import base64
import json

import numpy as np
import pytest

from fraudstream.detectors.schema import LabelEvent, Transaction
from fraudstream.stream.core.parse import (
    REASON_INVALID_FIELD,
    REASON_INVALID_JSON,
    REASON_MISSING_FIELD,
    REASON_UNKNOWN_TOPIC,
    REASON_UNPARSEABLE,
    parse_events,
)
from fraudstream.stream.metrics import BatchHistogram, WorkerMetrics
from fraudstream.stream.types import RawEvent

TX_TOPIC, LABEL_TOPIC = "tx", "lab"


def tx_event(offset, value, topic=TX_TOPIC):
    return RawEvent(topic, 0, offset, 1_700_000_000_000 + offset, value, b"k")


def good_tx(i):
    return Transaction(i, 1_600_000_000.0 + i, 7, 9, 12.5).to_json()


def test_good_and_bad_events_are_split_in_order_and_bad_ones_keep_their_bytes():
    raw_bad = [b"{not json", json.dumps({"transaction_id": 1, "timestamp": 1.0, "customer_id": 1,
                                         "terminal_id": 1}).encode(),
               json.dumps({"transaction_id": 1, "timestamp": 1.0, "customer_id": 1, "terminal_id": 1,
                           "amount": -3}).encode(), None]
    events = [tx_event(0, good_tx(10))] + [tx_event(i + 1, v) for i, v in enumerate(raw_bad)]
    events.append(tx_event(9, good_tx(11)))
    events.append(RawEvent("elsewhere", 2, 5, 0, good_tx(12)))
    label = LabelEvent(10, 9, 7, 1_600_000_010.0, True, 1_600_000_100.0)
    events.append(RawEvent(LABEL_TOPIC, 1, 3, 0, label.to_json()))

    parsed = parse_events(events, TX_TOPIC, LABEL_TOPIC)

    assert [t.transaction_id for t in parsed.transactions] == [10, 11]
    assert parsed.tx_broker_ts_s == [pytest.approx(1_700_000_000.0), pytest.approx(1_700_000_000.009)]
    assert parsed.labels == [label]
    assert parsed.dlq_reasons == [REASON_INVALID_JSON, REASON_MISSING_FIELD, REASON_INVALID_FIELD,
                                  REASON_INVALID_JSON, REASON_UNKNOWN_TOPIC]
    letters = [json.loads(v) for _, v in parsed.dlq]
    assert [base64.b64decode(d["original_b64"]) for d in letters[:3]] == raw_bad[:3]
    assert letters[1]["field"] == "amount" and letters[1]["reason"] == "missing"
    assert letters[2]["field"] == "amount" and "-3" in letters[2]["reason"]
    assert letters[3]["original_was_null"] is True
    assert [d["offset"] for d in letters] == [1, 2, 3, 4, 5]
    assert letters[4]["topic"] == "elsewhere" and letters[4]["partition"] == 2


def test_an_unexpected_exception_while_parsing_goes_to_the_dead_letters():
    # a JSON object whose timestamp is a list: the schema rejects it; bytes that are not UTF-8 also.
    events = [tx_event(0, b"\xff\xfe\x00"), tx_event(1, json.dumps([1, 2]).encode())]
    parsed = parse_events(events, TX_TOPIC, LABEL_TOPIC)
    assert parsed.transactions == []
    assert len(parsed.dlq) == 2
    assert set(parsed.dlq_reasons) <= {REASON_INVALID_JSON, REASON_UNPARSEABLE}


def test_batch_histogram_matches_counting_by_hand():
    hist = BatchHistogram("x_seconds", "test", [0.1, 0.5, 1.0], label="kind")
    values = np.array([0.05, 0.1, 0.2, 0.7, 3.0, np.nan])
    hist.observe_many(values, "a")
    hist.observe_many(np.array([0.3]), "a")
    family = next(iter(hist.collect()))
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples if s.labels["kind"] == "a"}
    finite = values[np.isfinite(values)].tolist() + [0.3]
    for bound in (0.1, 0.5, 1.0):
        assert samples[("x_seconds_bucket", repr(bound))] == sum(v <= bound for v in finite)
    assert samples[("x_seconds_bucket", "+Inf")] == len(finite)
    assert samples[("x_seconds_sum", None)] == pytest.approx(sum(finite))
    assert hist.count("a") == len(finite)


def test_worker_metrics_expose_prometheus_names():
    from prometheus_client import generate_latest

    metrics = WorkerMetrics()
    metrics.set_model_version("v1")
    metrics.set_model_version("v2")
    metrics.latency.observe_many(np.array([0.01, 0.02]))
    metrics.worker_latency.observe_many(np.array([0.003]))
    metrics.decisions.labels(decision="ALLOW", stage="LIGHT").inc(3)
    text = generate_latest(metrics.registry).decode()
    assert 'fraudstream_model_info{version="v2"} 1.0' in text
    assert 'version="v1"' not in text
    assert "fraudstream_end_to_end_latency_seconds_count 2.0" in text
    assert 'fraudstream_worker_latency_seconds_bucket{le="0.003"} 1.0' in text
    assert 'fraudstream_decisions_total{decision="ALLOW",stage="LIGHT"} 3.0' in text
