"""Decision JSON of a scored batch, fast: what ``DecisionRecord.to_json`` gives, byte for byte, per row.

Each column is encoded once for the whole batch: numbers as one orjson array split at its commas (a JSON number
holds none; NaN becomes ``null`` as in a record's own JSON), the few distinct strings (decision, stage, model
version) and reason tuples once each.  A row is then one bytes ``%``-format of a template holding the keys
(:func:`row_template`): no dict and no encoder call per row (1.2 us a row on a 7,000-row batch, against 2.2 with
one dict a row and one orjson call for the batch).  The JSON keys and their meaning are documented in
:mod:`fraudstream.stream.types`; the score fields follow from the cascade's stages: one ``<stage>_score`` per entry
of ``CascadeResult.scores``, in cascade order, after ``risk`` (for the shipped stages exactly
:data:`~fraudstream.stream.types.DECISION_KEYS`).
"""

from __future__ import annotations

import numpy as np
import orjson

from fraudstream.detectors.cascade.types import SCORE_SUFFIX, CascadeResult, Decision, Stage
from fraudstream.detectors.schema import TransactionBatch
from fraudstream.detectors.units import MS_PER_S

#: Decision JSON keys before and after the score fields.
LEADING_KEYS = ("transaction_id", "customer_id", "terminal_id", "amount", "decision", "stage", "risk")
TRAILING_KEYS = ("reasons", "model_version", "event_timestamp", "decided_at", "latency_ms")


def decision_keys(stage_names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The decision JSON keys of a cascade with these scoring stages, in order."""
    return (*LEADING_KEYS, *(name + SCORE_SUFFIX for name in stage_names), *TRAILING_KEYS)


def encode_decisions(
    result: CascadeResult,
    batch: TransactionBatch,
    broker_timestamps_s: np.ndarray,
    decided_at: float,
) -> list[bytes]:
    """Decision JSON per row of a scored batch, row-aligned with ``batch``.

    Parameters
    ----------
    result : the cascade's output for ``batch``.
    batch : the transactions that were scored.
    broker_timestamps_s : Kafka record timestamp of each row's event (epoch s), for ``latency_ms``.
    decided_at : wall-clock time of the decision (epoch s).
    """
    n = len(batch)
    if len(result) != n or broker_timestamps_s.shape[0] != n:
        raise ValueError(f"cascade result has {len(result)} rows, batch {n}, timestamps {broker_timestamps_s.shape[0]}")
    decision_json = {int(d): orjson.dumps(d.name) for d in Decision}
    stage_json = {int(s): orjson.dumps(s.name) for s in Stage}
    columns = [
        _numbers(batch.transaction_id.tolist()), _numbers(batch.customer_id.tolist()),
        _numbers(batch.terminal_id.tolist()), _numbers(batch.amount.tolist()),
        [decision_json[d] for d in result.decision.tolist()], [stage_json[s] for s in result.stage.tolist()],
        _numbers(np.asarray(result.risk, dtype=np.float64).tolist()),
        *(_numbers(np.asarray(values, dtype=np.float64).tolist()) for values in result.scores.values()),
        _reasons(result.reasons), [orjson.dumps(result.model_version)] * n, _numbers(batch.timestamp.tolist()),
        [orjson.dumps(float(decided_at))] * n, _numbers(((decided_at - broker_timestamps_s) * MS_PER_S).tolist()),
    ]
    keys = decision_keys(list(result.scores))
    if batch.account_id is not None:  # the transactions named their accounts: the decisions say so, last
        columns.append(_numbers(batch.account_id.tolist()))
        keys = (*keys, "account_id")
    template = row_template(keys)
    return [template % row for row in zip(*columns)]


def row_template(keys: tuple[str, ...]) -> bytes:
    """``{"k1":%s,"k2":%s,...}`` for a bytes ``%``-format of one row's encoded values (``%`` in a key escaped)."""
    heads = [orjson.dumps(key).replace(b"%", b"%%") + b":" for key in keys]
    return b"{" + b"%s,".join(heads) + b"%s}"


def _numbers(values: list[int] | list[float]) -> list[bytes]:
    """Each number's JSON as orjson writes it (NaN and infinities: ``null``)."""
    return orjson.dumps(values)[1:-1].split(b",") if values else []


def _reasons(reasons: list[tuple[str, ...]]) -> list[bytes]:
    """Each row's reasons as a JSON array; equal tuples (most ALLOW rows name the same thresholds) encoded once."""
    encoded: dict[tuple[str, ...], bytes] = {}
    out = []
    for row in reasons:
        raw = encoded.get(row)
        if raw is None:
            raw = encoded[row] = orjson.dumps(row)
        out.append(raw)
    return out
