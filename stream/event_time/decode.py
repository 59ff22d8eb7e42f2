"""A transaction's wire JSON decoded once: the JSON object and its event time (epoch s).

The event time is parsed once too: when it is valid and in range, the object's ``timestamp`` holds it as epoch
seconds (a number parses without the ISO-8601 work when the worker core validates the transaction).

Records without a readable event time (bad JSON, missing field, outside the sane range: they become dead letters
and touch no state) never wait in the alignment; records behind one of them in the same partition keep their
place.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from fraudstream.detectors.schema import (
    DEFAULT_EVENT_TIME_RANGE,
    EventTimeRange,
    InvalidEvent,
    Transaction,
    parse_timestamp,
)

#: Wire key of a transaction's event time.
EVENT_TIME_KEY = "timestamp"


def decode_event(value: bytes | None, time_range: EventTimeRange | None = DEFAULT_EVENT_TIME_RANGE
                 ) -> tuple[dict[str, Any] | None, float | None]:
    """A transaction's wire JSON decoded once: (the JSON object or None, its event time in epoch s or None).

    With ``time_range`` given and the event time in it, the object's ``timestamp`` is replaced by that event time.

    Either part is None when it cannot be read, or when the event time is outside ``time_range`` (None: any);
    the pipeline then reports the event as a dead letter, and alignment does not wait for it.
    """
    if value is None:
        return None, None
    try:
        data = orjson.loads(value)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    raw_time = data.get(EVENT_TIME_KEY)
    # the usual event: epoch seconds as a float in range (finite, since the range's ends are); nothing to replace
    if type(raw_time) is float and time_range is not None and time_range.earliest_s <= raw_time < time_range.latest_s:
        return data, raw_time
    try:
        timestamp = parse_timestamp(data[EVENT_TIME_KEY])
    except (KeyError, InvalidEvent):
        return data, None
    if time_range is not None and not time_range.earliest_s <= timestamp < time_range.latest_s:
        return data, None
    if not math.isfinite(timestamp):
        return data, None
    if time_range is not None:  # parsed once: the object carries its valid event time as epoch s from here on
        data[EVENT_TIME_KEY] = timestamp
    return data, timestamp


def decode_transaction(value: bytes | None, time_range: EventTimeRange = DEFAULT_EVENT_TIME_RANGE
                       ) -> tuple[Transaction | dict[str, Any] | None, float | None]:
    """:func:`decode_event`, then the object validated as a :class:`Transaction` when its event time is readable
    (the JSON object stays when a field does not validate: the worker core reports it as a dead letter).

    The consumer calls it as it fetches: the validation then runs before the batch, while Redis writes the one
    before (see the batch loop), not on the batch's own path.
    """
    decoded, event_time = decode_event(value, time_range)
    if decoded is None or event_time is None:
        return decoded, event_time
    try:
        return Transaction.from_dict(decoded, time_range), event_time
    except Exception:  # whatever one event raises (a bad field, or worse): the worker core reports it
        return decoded, event_time


def event_time_of(value: bytes | None, time_range: EventTimeRange | None = DEFAULT_EVENT_TIME_RANGE
                  ) -> float | None:
    """Event time (epoch s) of a transaction's wire JSON; None when it cannot be read (it will be a dead letter)."""
    return decode_event(value, time_range)[1]

