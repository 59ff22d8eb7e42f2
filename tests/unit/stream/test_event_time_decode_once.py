"""The consumer's decode parses the event time once; the worker core's validation gives the same transaction."""

import orjson
import pytest

from fraudstream.detectors.schema import DEFAULT_EVENT_TIME_RANGE, Transaction
from fraudstream.stream.event_time import decode_event

WIRE = [{"transaction_id": 1, "timestamp": "2018-04-01 00:00:31", "customer_id": 5, "terminal_id": 7, "amount": 1.5},
        {"transaction_id": 2, "timestamp": "2018-04-01T10:00:00Z", "customer_id": 5, "terminal_id": 7, "amount": 2},
        {"transaction_id": 3, "timestamp": 1522576800.25, "customer_id": 5, "terminal_id": 7, "amount": 3.0}]


@pytest.mark.parametrize("record", WIRE, ids=lambda r: str(r["timestamp"]))
def test_decoded_object_carries_its_event_time(record):
    raw = orjson.dumps(record)
    decoded, event_time = decode_event(raw, DEFAULT_EVENT_TIME_RANGE)
    assert decoded["timestamp"] == event_time
    assert Transaction.from_json(decoded) == Transaction.from_json(raw)


def test_out_of_range_time_keeps_the_wire_value():
    decoded, event_time = decode_event(orjson.dumps({**WIRE[0], "timestamp": "1900-01-01 00:00:00"}))
    assert event_time is None
    assert decoded["timestamp"] == "1900-01-01 00:00:00"
