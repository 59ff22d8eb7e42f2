"""The batch encoder of decision JSON gives, byte for byte, what each decision record's own JSON is."""

import json

import numpy as np
import pytest

from fraudstream.detectors.cascade.types import CascadeResult, Decision, Stage
from fraudstream.detectors.schema import Transaction, TransactionBatch
from fraudstream.stream.core.encode import encode_decisions, row_template
from fraudstream.stream.types import DecisionRecord

#: Reason strings JSON must escape or that look like the encoder's own separators.
TRICKY = ['},{"transaction_id":', '"}', "a,b", "100%s", "\\", "caf\u00e9 \u2603", "", "]", "line\nbreak"]


def scored(n: int, accounts: bool = False, extra_stage: bool = False):
    rng = np.random.default_rng(n)
    txs = [Transaction(2**40 + i, 1_600_000_000.0 + i * 0.123456789, i % 7, 3 * i,
                       [0.0, 1e-7, 12.5, 1e16, 299.99][i % 5], account_id=(10_000 + i) if accounts else None)
           for i in range(n)]
    batch = TransactionBatch.from_transactions(txs)
    heavy = rng.random(n)
    heavy[::2] = np.nan
    scores = {"light": rng.random(n), "anomaly": rng.random(n), "heavy": heavy}
    if extra_stage:
        scores["sequence"] = np.where(np.arange(n) % 3 == 0, np.nan, rng.random(n))
    reasons = [(TRICKY[i % len(TRICKY)], "light_score<0.01") if i % 2 else ("light_score<0.01",) for i in range(n)]
    reasons[-1:] = [()] if n else []
    result = CascadeResult(
        decision=np.array([int(Decision.ALLOW), int(Decision.REVIEW), int(Decision.BLOCK)] * n, dtype=np.int8)[:n],
        stage=np.array([int(s) for s in Stage] * n, dtype=np.int8)[:n], risk=rng.random(n), scores=scores,
        reasons=reasons, model_version='v"1%s\u00e9')
    broker = 1_700_000_000.0 + rng.random(n)
    return result, batch, broker


def records(result, batch, broker, decided_at):
    """One ``DecisionRecord`` a row, field by field (the slow, obvious way)."""
    def score(value):
        return None if np.isnan(value) else float(value)

    out = []
    for i in range(len(batch)):
        extra = tuple((f"{name}_score", score(values[i])) for name, values in result.scores.items()
                      if name not in ("light", "anomaly", "heavy"))
        out.append(DecisionRecord(
            transaction_id=int(batch.transaction_id[i]), customer_id=int(batch.customer_id[i]),
            terminal_id=int(batch.terminal_id[i]), amount=float(batch.amount[i]),
            decision=Decision(int(result.decision[i])).name, stage=Stage(int(result.stage[i])).name,
            risk=float(result.risk[i]), light_score=score(result.light_score[i]),
            anomaly_score=score(result.anomaly_score[i]), heavy_score=score(result.heavy_score[i]),
            reasons=tuple(result.reasons[i]), model_version=result.model_version,
            event_timestamp=float(batch.timestamp[i]), decided_at=decided_at,
            latency_ms=float((decided_at - broker[i]) * 1000.0), extra_scores=extra,
            account_id=int(batch.account_id[i]) if batch.account_id is not None else None))
    return out


@pytest.mark.parametrize("n", [0, 1, 2, 30])
@pytest.mark.parametrize("accounts", [False, True])
def test_batch_encoding_equals_each_records_own_json(n, accounts):
    result, batch, broker = scored(n, accounts)
    decided_at = 1_700_000_001.125
    assert encode_decisions(result, batch, broker, decided_at) == [
        r.to_json() for r in records(result, batch, broker, decided_at)]


def test_decision_records_round_trip_through_json_and_nan_becomes_null():
    result, batch, broker = scored(6)
    decided_at = 1_700_000_000.25
    rows = records(result, batch, broker, decided_at)
    heavy = result.heavy_score
    assert rows[0].heavy_score is None and rows[1].heavy_score == pytest.approx(result.heavy_score[1])
    for i, raw in enumerate(encode_decisions(result, batch, broker, decided_at)):
        assert DecisionRecord.from_json(raw) == rows[i]
        data = json.loads(raw)
        assert data["heavy_score"] is None if i % 2 == 0 else data["heavy_score"] == pytest.approx(heavy[i])
        assert data["latency_ms"] == pytest.approx((decided_at - broker[i]) * 1000.0)
    assert [r.needs_review for r in rows] == [d == Decision.REVIEW for d in result.decision]


def test_a_stage_beyond_the_shipped_ones_gets_its_score_after_theirs():
    result, batch, broker = scored(12, extra_stage=True)
    encoded = encode_decisions(result, batch, broker, 1_700_000_002.0)
    assert encoded == [r.to_json() for r in records(result, batch, broker, 1_700_000_002.0)]
    assert b'"heavy_score":null,"sequence_score":null,"reasons"' in encoded[0]


def test_row_template_escapes_percent_in_keys():
    assert row_template(("a%b", "c")) % (b"1", b"2") == b'{"a%b":1,"c":2}'


def test_row_count_mismatch_is_an_error():
    result, batch, broker = scored(3)
    with pytest.raises(ValueError, match="3 rows"):
        encode_decisions(result, batch, broker[:2], 1.0)
