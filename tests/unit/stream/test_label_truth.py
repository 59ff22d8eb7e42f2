"""Labels joined to stored decisions: counts per model version, decision and label; delays per source."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from fraudstream.detectors.schema import LabelEvent
from fraudstream.stream.core.label_truth import LabelTruth, join_labels


def label(tid: int, fraud: bool, delay_s: float = 3600.0, source: str = "chargeback") -> LabelEvent:
    return LabelEvent(transaction_id=tid, terminal_id=1, customer_id=2, tx_timestamp=1000.0, fraud=fraud,
                      known_at=1000.0 + delay_s, source=source)


def stored(decision: str, version: str) -> bytes:
    return orjson.dumps({"decision": decision, "model_version": version, "risk": 0.5})


def test_labels_are_counted_by_the_decision_of_their_transaction() -> None:
    decisions = {1: stored("BLOCK", "v1"), 2: stored("BLOCK", "v1"), 3: stored("REVIEW", "v2"),
                 4: stored("BLOCK", "v1")}
    labels = [label(1, True), label(2, False), label(3, True, 86400.0, "analyst"), label(4, True),
              label(99, True)]  # 99: no stored decision
    truth = join_labels(labels, decisions)
    assert sorted(truth.counts()) == [("v1", "BLOCK", "fraud", 2), ("v1", "BLOCK", "legit", 1),
                                      ("v2", "REVIEW", "fraud", 1)]
    delays = truth.delays_by_source()
    assert sorted(delays) == ["analyst", "chargeback"]
    assert delays["analyst"].tolist() == [86400.0]
    assert delays["chargeback"].tolist() == pytest.approx([3600.0] * 4)


def test_no_labels() -> None:
    truth = join_labels([], {1: stored("ALLOW", "v1")})
    assert truth.counts() == [] and truth.delays_by_source() == {}
    assert LabelTruth.empty().counts() == []


def test_many_labels_in_one_call() -> None:
    n = 10_000
    rng = np.random.default_rng(0)
    fraud = rng.random(n) < 0.3
    decisions = {i: stored("BLOCK" if i % 2 else "ALLOW", "v1") for i in range(n)}
    truth = join_labels([label(i, bool(fraud[i])) for i in range(n)], decisions)
    counts = {(d, lab): c for _, d, lab, c in truth.counts()}
    assert counts[("BLOCK", "fraud")] == int(fraud[1::2].sum())
    assert sum(counts.values()) == n
