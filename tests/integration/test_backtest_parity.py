"""The backtest decides as the live worker does: same decisions as ``fraudstream worker`` fed the same events.

A small model is trained on the first weeks of a simulated file; the backtest runs the last days with simulated
analysts (their fraud verdicts block the card, the worker's block list) and records every label it sent with its
``known_at`` and every block-list change with its time.  The same transactions and labels are then produced to
a real broker for a ``fraudstream worker`` subprocess on a real Redis: each label before the first transaction
at or after its ``known_at``, and, acting as the review service, each block-list entry written once every
transaction before its time is decided and before any later one is sent.  Every decision of the period (decision,
stage, reasons, scores, risk, model version) must equal the backtest's.  Both run with a review budget that the
first day's cases pass, so the REVIEWs it turns into ALLOW, and the cases the labels close, must agree too.

The worker runs with its default event-time slack (1 h): it may score a terminal's transaction before an earlier
one of another partition, up to the slack, while the backtest decides in strict event-time order; the features
that look at a terminal's last hour end where event time is settled, so the two still agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from waiting import wait_for
from worker_process import Worker

pytestmark = pytest.mark.integration

START, END = pd.Timestamp("2018-05-01"), pd.Timestamp("2018-05-04")
#: Longest wait (s) for a segment's transactions to be decided.
SEGMENT_TIMEOUT_S = 30.0
SCORE_COLUMNS = ("RISK", "LIGHT_SCORE", "ANOMALY_SCORE", "HEAVY_SCORE")
#: Review cases a day (the first day of the period opens 10 without a budget).
REVIEW_BUDGET = 6


@pytest.fixture(scope="module")
def backtested(tmp_path_factory):
    """(model root, rows fed in event-time order, the backtest run)."""
    from fraudstream.detectors.bundle import save_bundle
    from fraudstream.detectors.schema import TRANSACTION_ID, TX_DATETIME
    from fraudstream.training.analysts import AnalystSettings
    from fraudstream.training.backtest import BacktestSettings, run_backtest
    from fraudstream.training.simulator import SimulationConfig, simulate
    from fraudstream.training.train import TrainSettings, train_from_frame

    frame = simulate(SimulationConfig(n_customers=250, n_terminals=500, nb_days=33, seed=5))
    fast = TrainSettings(review_capacity=15, imbalance="none", calibration="isotonic", anomaly_methods=("IForest",),
                         anomaly_max_rows=1000, light_trees=20, heavy_trees=20, stacking_folds=2, valid_days=5)
    result = train_from_frame(frame, fast, end=START)
    root = tmp_path_factory.mktemp("parity-model")
    save_bundle(result.cascade, root, result.manifest_extras)
    settings = BacktestSettings(START, END, analysts=AnalystSettings(capacity_cards_per_day=6), block_mode="card",
                                block_days=0, block_on_chargeback=False, review_budget=REVIEW_BUDGET)
    run = run_backtest(frame, result.cascade, settings)
    rows = frame[frame[TX_DATETIME] < END].sort_values([TX_DATETIME, TRANSACTION_ID]).reset_index(drop=True)
    return root, rows, run


def _segments(rows: pd.DataFrame, run) -> list[tuple[float, list[tuple[str, object]], list[int]]]:
    """Per block-list time ``b`` (and a last one at +inf): the events to send before it, in order (labels
    known before the next transaction first), and the cards put on the list at ``b``."""
    from fraudstream.detectors.schema import CUSTOMER_ID, TERMINAL_ID, TRANSACTION_ID, TX_AMOUNT, TX_DATETIME

    times = rows[TX_DATETIME].astype("int64").to_numpy() / 1e9
    wire = [{"transaction_id": int(a), "timestamp": float(t), "customer_id": int(c), "terminal_id": int(m),
             "amount": float(x)}
            for a, t, c, m, x in zip(rows[TRANSACTION_ID], times, rows[CUSTOMER_ID], rows[TERMINAL_ID],
                                     rows[TX_AMOUNT])]
    assert all(on for _, _, on in run.block_events), "blocks of 0 days are never lifted"
    bounds = sorted({at for at, _, _ in run.block_events}) + [np.inf]
    labels = sorted(run.labels, key=lambda lab: lab.known_at)
    out, i, k = [], 0, 0
    for bound in bounds:
        events: list[tuple[str, object]] = []
        while i < len(wire) and times[i] < bound:
            while k < len(labels) and labels[k].known_at <= times[i]:
                events.append(("label", labels[k]))
                k += 1
            events.append(("tx", wire[i]))
            i += 1
        while k < len(labels) and labels[k].known_at < bound:
            events.append(("label", labels[k]))
            k += 1
        out.append((bound, events, [card for at, card, _ in run.block_events if at == bound]))
    assert i == len(wire) and k == len(labels)
    return out


def test_backtest_decisions_equal_the_live_workers(backtested, unique_topics, redis_url, read_topic, tmp_path):
    import redis
    from kafka import KafkaProducer

    from fraudstream.detectors.cascade.review_budget import REASON_REVIEW_BUDGET
    from fraudstream.detectors.schema import TRANSACTION_ID
    from fraudstream.stream.state.keys import Keyspace

    root, rows, run = backtested
    d = run.decisions
    assert {"ALLOW", "REVIEW", "BLOCK"} <= set(d["DECISION"]), "the sample exercises every decision"
    assert run.block_events and any(lab.source == "analyst" for lab in run.labels)
    assert any(REASON_REVIEW_BUDGET in reasons for reasons in d["REASONS"]), "the review budget bites"

    settings = unique_topics.settings(redis_url=redis_url, review_cases_per_day=REVIEW_BUDGET)
    keys = Keyspace(settings.redis_prefix)
    client = redis.Redis.from_url(redis_url)
    producer = KafkaProducer(bootstrap_servers=unique_topics.bootstrap, linger_ms=5)
    log = tmp_path / "worker.log"
    worker = Worker(settings, Path(root), log)
    try:
        worker.wait_ready()
        for bound, events, cards in _segments(rows, run):
            sent: list[int] = []
            for kind, event in events:
                if kind == "label":
                    producer.flush()  # every transaction sent so far is on the broker before the label
                    producer.send(settings.labels_topic, key=str(event.terminal_id).encode(),
                                  value=event.to_json())
                    producer.flush()  # and the label before any later transaction
                else:
                    producer.send(settings.transactions_topic, key=str(event["customer_id"]).encode(),
                                  value=json.dumps(event).encode())
                    sent.append(event["transaction_id"])
            producer.flush()
            wait_for(f"the decisions of the {len(sent)} transactions before {bound}",
                     lambda sent=sent: sent == [] or client.exists(*[keys.decision(t) for t in sent]) == len(sent),
                     SEGMENT_TIMEOUT_S, (log,))
            for card in cards:  # what the review service writes for an analyst's fraud verdict
                client.set(keys.block(card), json.dumps({"since": bound, "by": "parity-test", "case": card}))
        records = read_topic(unique_topics.decisions, len(rows))
        assert client.get(keys.review_budget) == str(REVIEW_BUDGET).encode(), "the budget, for the review page"
    finally:
        producer.close()
        client.close()
        worker.stop()

    live = {}
    for record in records:
        data = json.loads(record.value)
        assert live.setdefault(data["transaction_id"], data) == data, "one decision per transaction"
    assert len(live) == len(rows)
    assert "review budget spent" in log.read_text(), "the worker says when a day's budget runs out"
    mismatches = []
    for row in d.itertuples(index=False):
        got = live[getattr(row, TRANSACTION_ID)]
        want = (row.DECISION, row.STAGE, tuple(row.REASONS), row.MODEL_VERSION)
        if (got["decision"], got["stage"], tuple(got["reasons"]), got["model_version"]) != want:
            mismatches.append((getattr(row, TRANSACTION_ID), want, got))
            continue
        for column in SCORE_COLUMNS:
            mine, theirs = getattr(row, column), got[column.lower()]
            if (theirs is None) != bool(np.isnan(mine)) or (theirs is not None and abs(theirs - mine) > 1e-9):
                mismatches.append((getattr(row, TRANSACTION_ID), column, mine, theirs))
    assert not mismatches, f"{len(mismatches)} of {len(d)} decisions differ, e.g. {mismatches[:3]}"
