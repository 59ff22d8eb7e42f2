"""The consumer's decode parses the event time and validates the transaction once; the worker core reuses it."""

import orjson
import pytest

from fraudstream.detectors.schema import DEFAULT_EVENT_TIME_RANGE, Transaction
from fraudstream.stream.core.parse import REASON_INVALID_FIELD, REASON_UNPARSEABLE, parse_events
from fraudstream.stream.event_time import decode_event, decode_transaction
from fraudstream.stream.types import RawEvent

WIRE = [{"transaction_id": 1, "timestamp": "2018-04-01 00:00:31", "customer_id": 5, "terminal_id": 7, "amount": 1.5},
        {"transaction_id": 2, "timestamp": "2018-04-01T10:00:00Z", "customer_id": 5, "terminal_id": 7, "amount": 2},
        {"transaction_id": 3, "timestamp": 1522576800.25, "customer_id": 5, "terminal_id": 7, "amount": 3.0}]


@pytest.mark.parametrize("record", WIRE, ids=lambda r: str(r["timestamp"]))
def test_decoded_object_carries_its_event_time(record):
    raw = orjson.dumps(record)
    decoded, event_time = decode_event(raw, DEFAULT_EVENT_TIME_RANGE)
    assert decoded["timestamp"] == event_time
    assert Transaction.from_json(decoded) == Transaction.from_json(raw)


@pytest.mark.parametrize("value", [DEFAULT_EVENT_TIME_RANGE.earliest_s - 0.5, DEFAULT_EVENT_TIME_RANGE.latest_s,
                                   float("nan"), float("inf"), -1.0, 1522576800, True])
def test_a_number_out_of_range_or_not_a_float_takes_the_full_parse(value):
    """The float fast path and the full parse agree: out of range, not finite or another type."""
    record = {**WIRE[2], "timestamp": value}
    decoded, event_time = decode_event(orjson.dumps(record), DEFAULT_EVENT_TIME_RANGE)
    if value == 1522576800:  # an int in range: parsed, carried as float seconds
        assert event_time == 1522576800.0 and type(decoded["timestamp"]) is float
    else:
        assert event_time is None


def test_out_of_range_time_keeps_the_wire_value():
    decoded, event_time = decode_event(orjson.dumps({**WIRE[0], "timestamp": "1900-01-01 00:00:00"}))
    assert event_time is None
    assert decoded["timestamp"] == "1900-01-01 00:00:00"


@pytest.mark.parametrize("record", WIRE, ids=lambda r: str(r["timestamp"]))
def test_consumer_decode_validates_the_transaction_once(record):
    raw = orjson.dumps(record)
    decoded, event_time = decode_transaction(raw, DEFAULT_EVENT_TIME_RANGE)
    assert decoded == Transaction.from_json(raw)
    assert event_time == decoded.timestamp


@pytest.mark.parametrize("bad, field, reason", [
    ({"amount": -1}, "amount", REASON_INVALID_FIELD), ({"customer_id": "x"}, "customer_id", REASON_INVALID_FIELD),
    ({"terminal_id": None}, "terminal_id", REASON_INVALID_FIELD),
    ({"terminal_id": "9" * 200_000}, None, REASON_UNPARSEABLE)])  # int() refuses it with a ValueError
def test_an_invalid_field_keeps_the_object_and_the_core_names_it(bad, field, reason):
    raw = orjson.dumps({**WIRE[0], **bad})
    decoded, event_time = decode_transaction(raw, DEFAULT_EVENT_TIME_RANGE)
    assert isinstance(decoded, dict) and event_time is not None  # aligned by its time, reported by the core
    event = RawEvent("tx", 0, 3, 0, raw, decoded=decoded)
    parsed = parse_events([event], "tx", "labels")
    assert parsed.transactions == [] and parsed.dlq_reasons == [reason]
    assert orjson.loads(parsed.dlq[0][1])["field"] == field


def test_the_core_takes_the_consumers_transaction_as_it_is():
    raw = orjson.dumps(WIRE[2])
    decoded, _ = decode_transaction(raw)
    parsed = parse_events([RawEvent("tx", 0, 0, 1000, raw, decoded=decoded)], "tx", "labels")
    assert parsed.transactions == [decoded] and parsed.transactions[0] is decoded


def test_unreadable_json_has_neither_object_nor_time():
    assert decode_transaction(b"{not json") == (None, None)
