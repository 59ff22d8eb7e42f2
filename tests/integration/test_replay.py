"""Replay to a real broker: every event arrives once, as valid JSON, in order per key, labels on time."""

import json
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fraudstream.cli.replay import EXIT_BAD_INPUT
from fraudstream.cli.replay import command as replay_command
from fraudstream.detectors.schema import (
    CUSTOMER_ID,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
    LabelEvent,
    Transaction,
)
from fraudstream.stream.replay import replay

pytestmark = pytest.mark.integration

DAY = 86_400.0


def small_frame(n=300, seed=11, unknown_labels=True):
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2018-04-01")
    offsets = np.sort(rng.uniform(0, 20 * DAY, size=n))
    fraud = rng.choice([0.0, 1.0], size=n, p=[0.9, 0.1])
    if unknown_labels:  # frames may lack some labels; files may not
        fraud[rng.random(n) < 0.15] = np.nan
    frame = pd.DataFrame({
        TRANSACTION_ID: np.arange(n),
        TX_DATETIME: start + pd.to_timedelta(offsets, unit="s"),
        CUSTOMER_ID: rng.integers(0, 20, size=n),
        TERMINAL_ID: rng.integers(0, 10, size=n),
        TX_AMOUNT: np.round(rng.uniform(1, 200, size=n), 2),
        TX_FRAUD: fraud,
    })
    return frame.sample(frac=1.0, random_state=seed)  # the file need not be sorted


def test_replay_delivers_every_transaction_and_label_in_order(unique_topics, read_topic):
    frame = small_frame()
    settings = unique_topics.settings()
    summary = replay(frame, settings, rate=1000.0, labels_delay_s=7 * DAY, labels_lead_s=DAY, progress=False,
                     label_feed="all")
    n_labels = int(frame[TX_FRAUD].notna().sum())
    assert (summary.sent, summary.labels_sent, summary.errors) == (len(frame), n_labels, 0)
    assert not summary.interrupted and summary.tx_per_s > 0

    tx_records = read_topic(unique_topics.transactions, len(frame))
    label_records = read_topic(unique_topics.labels, n_labels)
    assert len(tx_records) == len(frame) and len(label_records) == n_labels

    txs = [(r, Transaction.from_json(r.value)) for r in tx_records]
    assert sorted(t.transaction_id for _, t in txs) == sorted(frame[TRANSACTION_ID].tolist())
    by_id = frame.set_index(TRANSACTION_ID)
    for record, tx in txs:
        assert record.key == str(tx.customer_id).encode()
        assert tx.customer_id == by_id.loc[tx.transaction_id, CUSTOMER_ID]
        assert tx.amount == pytest.approx(by_id.loc[tx.transaction_id, TX_AMOUNT])
        expected_ts = by_id.loc[tx.transaction_id, TX_DATETIME].tz_localize("UTC").timestamp()
        assert tx.timestamp == pytest.approx(expected_ts)

    per_key = defaultdict(list)  # one key -> one partition: offsets follow event time
    for record, tx in sorted(txs, key=lambda rt: (rt[0].partition, rt[0].offset)):
        per_key[record.key].append((tx.timestamp, tx.transaction_id))
    for key, seq in per_key.items():
        assert seq == sorted(seq), f"customer {key} out of event-time order"

    tx_sent = sorted((r.timestamp, t.timestamp) for r, t in txs)  # (send time ms, event time s)
    for record in label_records:
        label = LabelEvent.from_json(record.value)
        assert record.key == str(label.terminal_id).encode()
        assert label.source == "chargeback"
        assert label.known_at == pytest.approx(label.tx_timestamp + 7 * DAY)
        assert label.fraud == bool(by_id.loc[label.transaction_id, TX_FRAUD])
        release = label.known_at - DAY
        later = [sent for sent, event in tx_sent if event >= release]
        earlier = [sent for sent, event in tx_sent if event < release]
        assert not later or record.timestamp <= min(later), "label sent after a transaction that may count it"
        assert not earlier or record.timestamp >= max(earlier), "label sent before its release time"


def test_a_file_with_accounts_sends_the_account_and_keys_by_it(unique_topics, read_topic):
    frame = small_frame(n=60, unknown_labels=False)
    frame["ACCOUNT_ID"] = frame[CUSTOMER_ID] // 2  # two cards an account
    replay(frame, unique_topics.settings(), rate=2000.0, labels_delay_s=None, progress=False)
    records = read_topic(unique_topics.transactions, len(frame))
    by_id = frame.set_index(TRANSACTION_ID)
    assert len(records) == len(frame)
    for record in records:
        tx = Transaction.from_json(record.value)
        assert tx.account_id == by_id.loc[tx.transaction_id, "ACCOUNT_ID"] == tx.account
        assert tx.customer_id == by_id.loc[tx.transaction_id, CUSTOMER_ID]
        assert record.key == str(tx.account_id).encode()


def test_cli_replays_a_file_window(unique_topics, read_topic, tmp_path):
    frame = small_frame(n=120, unknown_labels=False)
    path = tmp_path / "tx.csv"
    frame.to_csv(path, index=False)
    start, end = pd.Timestamp("2018-04-05"), pd.Timestamp("2018-04-12")
    in_window = frame[(frame[TX_DATETIME] >= start) & (frame[TX_DATETIME] < end)]
    result = CliRunner().invoke(replay_command, [
        str(path), "--from", "2018-04-05", "--to", "2018-04-12", "--limit", "25", "--no-progress",
        "--bootstrap-servers", unique_topics.bootstrap, "--topic", unique_topics.transactions,
    ])
    assert result.exit_code == 0, result.output
    assert "sent 25/25 transactions" in result.output
    records = read_topic(unique_topics.transactions, 25)
    got = sorted(json.loads(r.value)["transaction_id"] for r in records)
    expected = in_window.sort_values([TX_DATETIME, TRANSACTION_ID])[TRANSACTION_ID].head(25)
    assert got == sorted(expected.tolist())


def test_cli_rejects_a_bad_row_with_exit_2(kafka_bootstrap, tmp_path):
    frame = small_frame(n=10, unknown_labels=False).sort_values(TX_DATETIME).reset_index(drop=True)
    frame[TX_AMOUNT] = frame[TX_AMOUNT].astype(object)
    frame.loc[6, TX_AMOUNT] = "twelve"
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    result = CliRunner().invoke(replay_command, [str(path), "--no-progress", "--bootstrap-servers", kafka_bootstrap])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "TX_AMOUNT" in result.output and "row 8" in result.output  # CSV line 8 = data row 6


def test_cli_names_a_missing_file(kafka_bootstrap, tmp_path):
    missing = tmp_path / "nope.csv"
    result = CliRunner().invoke(replay_command, [str(missing), "--bootstrap-servers", kafka_bootstrap])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "nope.csv" in result.output
