"""The live worker's event-time rules come from its settings; too-early records become dead letters, late ones
are decided and counted; timestamps outside the sane range are invalid events."""

from __future__ import annotations

import json
import math

import pytest
from aiokafka import TopicPartition

from fraudstream.detectors.schema import EventTimeRange
from fraudstream.stream.batch_loop import split_released
from fraudstream.stream.core.parse import REASON_INVALID_FIELD, REASON_TOO_EARLY, parse_events
from fraudstream.stream.event_time import LATE, NO_TIME, ON_TIME, TOO_EARLY, EventTimeAligner, Released
from fraudstream.stream.settings import StreamSettings
from fraudstream.stream.types import RawEvent

DAY_S = 86_400.0
WALL_S = 1_796_000_000.0  # 2026-12-01


def event(offset: int, timestamp: object, transaction_id: int | None = None) -> RawEvent:
    data = {"transaction_id": offset if transaction_id is None else transaction_id, "timestamp": timestamp,
            "customer_id": 1, "terminal_id": 2, "amount": 10.0}
    value = json.dumps(data).encode()
    return RawEvent("tx", 0, offset, 1_000, value, b"1", data)


def test_the_worker_runs_the_full_rules_from_its_settings():
    rules = StreamSettings().event_time_rules()
    assert math.isfinite(rules.max_future_skew_s) and math.isfinite(rules.idle_timeout_s)
    assert rules.max_buffered == StreamSettings().max_held_back_events
    env = {"FRAUDSTREAM_WORKER_MAX_FUTURE_SKEW_S": "600", "FRAUDSTREAM_WORKER_IDLE_PARTITION_TIMEOUT_S": "5",
           "FRAUDSTREAM_WORKER_MAX_HELD_BACK_EVENTS": "100", "FRAUDSTREAM_WORKER_EVENT_TIME_SLACK_S": "60"}
    rules = StreamSettings.from_env(env).event_time_rules()
    assert (rules.max_future_skew_s, rules.idle_timeout_s, rules.max_buffered, rules.slack_s) == (600, 5, 100, 60)


def test_an_empty_event_time_range_is_refused_naming_the_variable():
    with pytest.raises(ValueError, match="event time range"):
        StreamSettings(event_time_earliest_s=2e9, event_time_latest_s=1e9)
    assert StreamSettings().event_time_range() == EventTimeRange()


def test_a_record_ahead_of_the_wall_clock_is_released_at_once_as_a_dead_letter_with_its_reason():
    aligner: EventTimeAligner[TopicPartition, RawEvent] = EventTimeAligner(
        rules=StreamSettings().event_time_rules(), wall_clock=lambda: WALL_S)
    tp = TopicPartition("tx", 0)
    records = [event(0, WALL_S + 30 * DAY_S), event(1, WALL_S - 10.0), event(2, WALL_S - 5.0)]
    aligner.add(tp, records, [WALL_S + 30 * DAY_S, WALL_S - 10.0, WALL_S - 5.0])
    released = aligner.take_released({tp: True}, 100)
    assert [r.timing for r in released[tp]] == [TOO_EARLY, ON_TIME, ON_TIME]
    events, letters, late = split_released(released)
    assert [e.offset for e in events] == [1, 2] and late == 0
    assert len(letters) == 1
    letter = json.loads(letters[0][1])
    assert letter["reason_code"] == REASON_TOO_EARLY and letter["field"] == "timestamp" and letter["offset"] == 0
    assert "ahead of the wall clock" in letter["reason"]


def test_late_records_are_handled_and_counted_unreadable_ones_handled_for_the_parser():
    tp = TopicPartition("tx", 0)
    released = {tp: [Released(event(0, 1.0), 1.0, ON_TIME), Released(event(1, 0.0), 0.0, LATE),
                     Released(event(2, "x"), None, NO_TIME)]}
    events, letters, late = split_released(released)
    assert [e.offset for e in events] == [0, 1, 2] and letters == [] and late == 1


def test_timestamps_outside_the_configured_range_are_invalid_events():
    narrow = EventTimeRange(1_500_000_000.0, 1_600_000_000.0)
    parsed = parse_events([event(0, 1_550_000_000.0), event(1, "9999-12-31T23:59:59Z"), event(2, 1_700_000_000.0)],
                          "tx", "labels", narrow)
    assert [t.transaction_id for t in parsed.transactions] == [0]
    assert parsed.dlq_reasons == [REASON_INVALID_FIELD, REASON_INVALID_FIELD]
    assert all(json.loads(v)["field"] == "timestamp" for _, v in parsed.dlq)
