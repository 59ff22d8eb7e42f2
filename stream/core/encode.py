"""Decision JSON of a scored batch, fast: what ``DecisionRecord.to_json`` gives, byte for byte, per row.

Columns are converted to Python lists once, each row is one dict (no record objects) and the batch is one
orjson call, split at the row boundaries (:func:`split_objects`).  The
JSON keys and their meaning are documented in :mod:`fraudstream.stream.types`; the score fields follow from the
cascade's stages: one ``<stage>_score`` per entry of ``CascadeResult.scores``, in cascade order, after ``risk``
(for the shipped stages exactly :data:`~fraudstream.stream.types.DECISION_KEYS`).
"""

from __future__ import annotations

import numpy as np
import orjson

from fraudstream.detectors.cascade.types import SCORE_SUFFIX, CascadeResult, Decision, Stage
from fraudstream.detectors.schema import TransactionBatch
from fraudstream.detectors.units import MS_PER_S
from fraudstream.stream.types import DECISION_JSON_OPTIONS

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
    decision_names = {int(d): d.name for d in Decision}
    stage_names = {int(s): s.name for s in Stage}
    columns = (
        batch.transaction_id.tolist(), batch.customer_id.tolist(), batch.terminal_id.tolist(), batch.amount.tolist(),
        [decision_names[d] for d in result.decision.tolist()], [stage_names[s] for s in result.stage.tolist()],
        np.asarray(result.risk, dtype=np.float64).tolist(),
        *(_nan_to_none(values) for values in result.scores.values()), result.reasons,  # tuples: JSON arrays
        [result.model_version] * n, batch.timestamp.tolist(), [float(decided_at)] * n,
        ((decided_at - broker_timestamps_s) * MS_PER_S).tolist(),
    )
    keys = decision_keys(list(result.scores))
    if batch.account_id is not None:  # the transactions named their accounts: the decisions say so, last
        columns = (*columns, batch.account_id.tolist())
        keys = (*keys, "account_id")
    return split_objects(orjson.dumps([dict(zip(keys, row)) for row in zip(*columns)], option=DECISION_JSON_OPTIONS),
                         keys[0], n)


def split_objects(array_json: bytes, first_key: str, n: int) -> list[bytes]:
    """The ``n`` objects of a JSON array of flat objects that all begin with ``first_key``, each as its own bytes.

    One ``orjson.dumps`` for the batch instead of one per row.  The separator ``},{"<first_key>":`` cannot occur
    inside a JSON string (a quote there is escaped), nor inside a flat object, so it splits exactly at the rows.
    """
    if n == 0:
        return []
    head = b'{"' + first_key.encode() + b'":'
    pieces = array_json[1:-1].split(b"}," + head)
    if len(pieces) != n:
        raise ValueError(f"decision JSON: {len(pieces)} objects where {n} were encoded")
    if n == 1:
        return pieces
    out = [head + piece + b"}" for piece in pieces]
    out[0] = pieces[0] + b"}"
    out[-1] = head + pieces[-1]
    return out


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    values = np.asarray(values, dtype=np.float64)
    out: list[float | None] = values.tolist()
    for i in np.flatnonzero(np.isnan(values)).tolist():
        out[i] = None
    return out
