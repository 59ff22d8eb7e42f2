"""Parsing a micro-batch of raw events into transactions, labels and dead letters.

A bad event never stops the batch: it becomes a dead-letter message (JSON with ``reason_code``, ``reason``,
``field``, the original bytes as ``original_b64``, topic, partition, offset and record timestamp) and the rest of
the batch goes on.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from fraudstream.detectors.schema import DEFAULT_EVENT_TIME_RANGE, EventTimeRange, InvalidEvent, LabelEvent, Transaction
from fraudstream.detectors.units import MS_PER_S
from fraudstream.stream.types import Message, RawEvent

# Dead-letter reason codes (the ``reason`` label of ``fraudstream_dlq_total``).
REASON_INVALID_JSON = "invalid_json"
REASON_MISSING_FIELD = "missing_field"
REASON_INVALID_FIELD = "invalid_field"
REASON_UNPARSEABLE = "unparseable"
REASON_UNKNOWN_TOPIC = "unknown_topic"
#: A transaction id seen before with other content (customer, terminal, amount or time).
REASON_CONFLICT = "conflict"
#: A transaction too far ahead of the wall clock or of the stream's event time (the event-time rules refuse it).
REASON_TOO_EARLY = "too_early"

@dataclass
class ParsedBatch:
    """Valid transactions and labels of a batch (in arrival order) and dead-letter messages for the rest."""

    transactions: list[Transaction] = field(default_factory=list)
    #: Kafka record timestamp (epoch s) of each transaction.
    tx_broker_ts_s: list[float] = field(default_factory=list)
    #: the raw event of each transaction (a conflicting one becomes a dead letter later).
    tx_events: list[RawEvent] = field(default_factory=list)
    labels: list[LabelEvent] = field(default_factory=list)
    #: (partition, offset) of each label in ``labels``.
    label_at: list[tuple[int, int]] = field(default_factory=list)
    dlq: list[Message] = field(default_factory=list)
    dlq_reasons: list[str] = field(default_factory=list)
    #: per ``dlq`` entry: (partition, offset) when it is a label event, else None.
    dlq_label_at: list[tuple[int, int] | None] = field(default_factory=list)

    @property
    def label_partitions(self) -> list[int]:
        """Label partitions the batch holds records of (labels and label dead letters), sorted."""
        return sorted({p for p, _ in self.label_at} | {at[0] for at in self.dlq_label_at if at})


def dead_letter(event: RawEvent, reason_code: str, reason: str, field_name: str | None) -> bytes:
    """Dead-letter JSON: reason code and text, field, original bytes (base64) and where the event came from."""
    original = event.value if event.value is not None else b""
    return json.dumps({
        "reason_code": reason_code, "reason": reason, "field": field_name,
        "original_b64": base64.b64encode(original).decode("ascii"), "original_was_null": event.value is None,
        "topic": event.topic, "partition": event.partition, "offset": event.offset,
        "timestamp_ms": event.timestamp_ms,
    }, separators=(",", ":")).encode()


def _reason_code(exc: InvalidEvent) -> str:
    if exc.field is None:
        return REASON_INVALID_JSON
    return REASON_MISSING_FIELD if exc.reason == "missing" else REASON_INVALID_FIELD


def parse_events(events: Sequence[RawEvent], transactions_topic: str, labels_topic: str,
                 time_range: EventTimeRange = DEFAULT_EVENT_TIME_RANGE) -> ParsedBatch:
    """Parse and validate raw events; never raises for a bad event (it goes to ``dlq`` with its reason).
    Transaction timestamps outside ``time_range`` are invalid."""
    out = ParsedBatch()
    for event in events:
        try:
            if event.topic == transactions_topic:
                if event.value is None:
                    raise InvalidEvent("empty message (null value)")
                decoded = event.decoded
                out.transactions.append(decoded if isinstance(decoded, Transaction) else Transaction.from_json(
                    decoded if decoded is not None else event.value, time_range))
                out.tx_broker_ts_s.append(event.timestamp_ms / MS_PER_S)
                out.tx_events.append(event)
            elif event.topic == labels_topic:
                if event.value is None:
                    raise InvalidEvent("empty message (null value)")
                out.labels.append(LabelEvent.from_json(event.value))
                out.label_at.append((event.partition, event.offset))
            else:
                _add_dead_letter(out, event, labels_topic, REASON_UNKNOWN_TOPIC,
                                 f"no handler for topic {event.topic!r}", None)
        except InvalidEvent as exc:
            _add_dead_letter(out, event, labels_topic, _reason_code(exc), exc.reason, exc.field)
        except Exception as exc:  # anything else one event can raise must not stop the batch
            _add_dead_letter(out, event, labels_topic, REASON_UNPARSEABLE, repr(exc), None)
    return out


def _add_dead_letter(out: ParsedBatch, event: RawEvent, labels_topic: str, code: str, reason: str,
                     field_name: str | None) -> None:
    out.dlq.append((event.key, dead_letter(event, code, reason, field_name)))
    out.dlq_reasons.append(code)
    out.dlq_label_at.append((event.partition, event.offset) if event.topic == labels_topic else None)
