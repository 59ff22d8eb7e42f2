"""The contracts the stream worker shares with its neighbours: what it consumes, what it emits, what it queues.

* :class:`RawEvent`: one consumed Kafka record, as the worker core sees it.
* :class:`DecisionRecord`: the message on the ``decisions`` topic (one per transaction) and its JSON form.
* The review item: what a REVIEW decision leaves for an analyst (:func:`review_item_fields`, statuses, verdicts).

Both ``fraudstream.stream`` and ``fraudstream.review_queue`` import this module; it imports neither of them.

Decision JSON keys (all present, ``null`` where a stage did not run), in :data:`DECISION_KEYS` order:
``transaction_id`` (int), ``customer_id`` (int), ``terminal_id`` (int), ``amount`` (currency units),
``decision`` (``"ALLOW"`` / ``"BLOCK"`` / ``"REVIEW"``), ``stage`` (``"RULES"`` / ``"LIGHT"`` / ``"HEAVY"``),
``risk``, ``light_score``, ``anomaly_score``, ``heavy_score`` (floats in [0, 1] or ``null``), ``reasons``
(list of strings), ``model_version`` (str), ``event_timestamp`` (the transaction's own time, epoch s),
``decided_at`` (wall clock when the decision was made, epoch s) and ``latency_ms`` (broker arrival of the event,
i.e. its Kafka record timestamp, to ``decided_at``, in ms).  A cascade with more scoring stages than the shipped
three (``detectors.cascade.registry``) adds one ``<stage>_score`` per extra stage after ``heavy_score``, in
registration order (:attr:`DecisionRecord.extra_scores`); the review item carries them too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from fraudstream.detectors.cascade.types import SCORE_SUFFIX, Decision
from fraudstream.detectors.schema import Transaction

#: orjson options of decision JSON: compact output, numpy scalars accepted.
DECISION_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY

#: Review item status before and after an analyst's verdict.
STATUS_PENDING = "pending"
STATUS_RESOLVED = "resolved"
#: An analyst's possible verdicts.
VERDICTS = ("fraud", "legit")

#: A message to produce: (Kafka key, value).
Message = tuple[bytes | None, bytes]


@dataclass(slots=True)
class RawEvent:
    """One consumed Kafka record (not to be changed once made; not frozen because a frozen dataclass costs 1.9 us
    to construct against 0.3 us, and one is made per record fetched).

    timestamp_ms : Kafka record timestamp (broker arrival), epoch ms.
    decoded : ``value`` already decoded by the consumer: the validated :class:`Transaction`, or the JSON object when
        it did not validate (the worker core then says why), or None.
    fetched_at_s : wall-clock time (epoch s) the worker's transaction consumer returned it from a fetch; 0 when it
        did not come from there (labels, a rebuild), for the worker's own latency (``worker_latency_seconds``).
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes | None
    key: bytes | None = None
    decoded: Transaction | dict[str, Any] | None = None
    fetched_at_s: float = 0.0


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """What the cascade decided for one transaction, with the scores and the model version behind it."""

    transaction_id: int
    customer_id: int
    terminal_id: int
    amount: float
    decision: str
    stage: str
    risk: float
    light_score: float | None
    anomaly_score: float | None
    heavy_score: float | None
    reasons: tuple[str, ...]
    model_version: str
    event_timestamp: float
    decided_at: float
    latency_ms: float
    #: (JSON key ``<stage>_score``, score or None) of each scoring stage beyond the shipped three, in order.
    extra_scores: tuple[tuple[str, float | None], ...] = ()
    #: the account the transaction named (``Transaction.account_id``; JSON key ``account_id``, last, only then).
    account_id: int | None = None

    @property
    def needs_review(self) -> bool:
        return self.decision == Decision.REVIEW.name

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in DECISION_KEYS:
            out[key] = getattr(self, key)
            if key == _LAST_SHIPPED_SCORE:
                out.update(self.extra_scores)
        out["reasons"] = list(self.reasons)
        if self.account_id is not None:
            out["account_id"] = self.account_id
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=DECISION_JSON_OPTIONS)

    @classmethod
    def from_json(cls, raw: bytes | str) -> DecisionRecord:
        data = orjson.loads(raw)
        data["reasons"] = tuple(data.get("reasons") or ())
        extra = tuple((k, data.pop(k)) for k in list(data) if k.endswith(SCORE_SUFFIX) and k not in _FIELDS)
        return cls(**data, extra_scores=extra)


_FIELDS = frozenset(DecisionRecord.__dataclass_fields__)
_LAST_SHIPPED_SCORE = "heavy_score"
#: JSON keys of a decision message of the shipped cascade, in :class:`DecisionRecord` field order.
DECISION_KEYS: tuple[str, ...] = tuple(name for name in DecisionRecord.__dataclass_fields__
                                       if name not in ("extra_scores", "account_id"))


def decision_key(transaction_id: int) -> bytes:
    """Kafka key of a decision message: the transaction id (decimal ASCII)."""
    return str(transaction_id).encode()


def _text(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def review_item_fields(record: DecisionRecord) -> dict[str, str]:
    """The review item of a REVIEW decision, as strings (stored as one Redis hash, see ``stream.state.keys``).

    ``transaction_id``, ``customer_id``, ``terminal_id``, ``amount`` (currency units), ``event_timestamp``
    (transaction time, epoch s), ``risk``, ``light_score``, ``anomaly_score``, ``heavy_score`` (floats; empty
    string where a stage did not run), ``reasons`` (JSON list of strings), ``model_version``, ``decided_at``
    (epoch s), ``status`` (:data:`STATUS_PENDING`), then ``<stage>_score`` of each extra stage, and
    ``account_id`` when the transaction named one (the case file reads the account's history); a verdict adds
    ``verdict``, ``analyst``, ``resolved_at``.
    """
    return {
        "transaction_id": str(record.transaction_id),
        "customer_id": str(record.customer_id),
        "terminal_id": str(record.terminal_id),
        "amount": _text(record.amount),
        "event_timestamp": _text(record.event_timestamp),
        "risk": _text(record.risk),
        "light_score": _text(record.light_score),
        "anomaly_score": _text(record.anomaly_score),
        "heavy_score": _text(record.heavy_score),
        **{key: _text(value) for key, value in record.extra_scores},
        "reasons": json.dumps(list(record.reasons)),
        "model_version": record.model_version,
        "decided_at": _text(record.decided_at),
        "status": STATUS_PENDING,
        **({"account_id": str(record.account_id)} if record.account_id is not None else {}),
    }
