"""Event-time rules that cannot be held hostage: late, too early, unreadable, idle partitions, a bounded buffer
(property-based: hypothesis draws the streams and the fetch schedule; clocks are simulated)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.stream.event_time import (
    LATE,
    NO_TIME,
    ON_TIME,
    TOO_EARLY,
    EventTimeAligner,
    EventTimeRules,
)

DAY_S = 86_400.0
WALL_START_S = 1_796_000_000.0  # 2026-12-01: the replayed data is from 2018
STREAM_START_S = 1_522_540_800.0  # 2018-04-01
RULES = EventTimeRules(slack_s=3_600.0, max_future_skew_s=DAY_S, idle_timeout_s=30.0, max_buffered=400)

KINDS = ["valid"] * 12 + ["late", "future_wall", "future_stream", "unreadable"]


class Clocks:
    """A monotonic and a wall clock that advance only when told."""

    def __init__(self) -> None:
        self.mono = 0.0
        self.wall = WALL_START_S

    def tick(self, seconds: float = 1.0) -> None:
        self.mono += seconds
        self.wall += seconds


def make_stream(kinds: list[str], gaps: list[float]) -> list[tuple[str, float | None]]:
    """(kind, event time) in offset order: valid records in event-time order, bad ones mixed in."""
    out, t = [], STREAM_START_S
    for kind, gap in zip(kinds, gaps):
        if kind == "valid":
            t += gap
            out.append((kind, t))
        elif kind == "late":
            out.append((kind, t - 2 * DAY_S))
        elif kind == "future_wall":
            out.append((kind, WALL_START_S + 10 * DAY_S))
        elif kind == "future_stream":
            out.append((kind, t + 400 * DAY_S))
        else:
            out.append((kind, None))
    return out


#: Partitions of valid traffic start together and stay within the skew of each other (gaps of at most 10 min, at
#: most 120 records: under a day), as a producer keyed by customer makes them; bad records of every kind mixed in.
streams_strategy = st.lists(
    st.tuples(st.just("valid"), st.floats(1.0, 600.0)).flatmap(
        lambda first: st.lists(st.tuples(st.sampled_from(KINDS), st.floats(1.0, 600.0)), max_size=119).map(
            lambda rest: [first, *rest])),
    min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(drawn=streams_strategy, schedule_seed=st.integers(0, 2**32 - 1))
def test_every_record_is_released_once_in_order_with_its_verdict_and_nothing_holds_the_stream(drawn, schedule_seed):
    rnd = random.Random(schedule_seed)  # the fetch schedule: which partitions deliver, stall, how much
    streams = {p: make_stream([k for k, _ in items], [g for _, g in items]) for p, items in enumerate(drawn)}
    clocks = Clocks()
    aligner = EventTimeAligner(rules=RULES, clock=lambda: clocks.mono, wall_clock=lambda: clocks.wall)
    fetched = {p: 0 for p in streams}
    done = {p: 0 for p in streams}
    stalled_until = {p: 0 for p in streams}  # a partition with backlog whose fetches return nothing
    verdicts: dict[tuple[int, int], str] = {}
    polluted_at: dict[tuple[int, int], bool] = {}  # an outlier went out on time before this record
    polluted = False
    latest_on_time = -math.inf
    rounds_without_release = 0
    total = sum(len(s) for s in streams.values())
    for round_ in range(20_000):
        if sum(done.values()) == total:
            break
        for p, stream in streams.items():
            if round_ < stalled_until[p] or fetched[p] == len(stream):
                continue
            if rnd.random() < 0.03:
                stalled_until[p] = round_ + rnd.randint(5, 80)
                continue
            if rnd.random() < 0.6:
                n = min(rnd.randint(1, 40), aligner.room())
                chunk = list(range(fetched[p], min(fetched[p] + n, len(stream))))
                aligner.add(p, [(p, i) for i in chunk], [stream[i][1] for i in chunk])
                fetched[p] += len(chunk)
        assert aligner.total_buffered <= RULES.max_buffered
        at_end = {p: fetched[p] == len(s) for p, s in streams.items()}
        released = aligner.take_released(at_end, max_records=rnd.randint(1, 60))
        for p, records in released.items():
            assert [r.record for r in records] == [(p, i) for i in range(done[p], done[p] + len(records))], \
                "not a prefix of the partition in offset order"
            done[p] += len(records)
            for r in records:
                verdicts[r.record] = r.timing
                polluted_at[r.record] = polluted
                if r.timing == ON_TIME and streams[r.record[0]][r.record[1]][0] == "future_stream":
                    polluted = True
                if r.timing == LATE:
                    assert r.event_time < latest_on_time - RULES.slack_s
                if r.timing == TOO_EARLY:
                    assert r.reason and "ahead of" in r.reason
        for records in released.values():
            times = [r.event_time for r in records if r.timing == ON_TIME]
            latest_on_time = max([latest_on_time, *times])
        waiting_only_on_stalls = all(round_ < stalled_until[p] for p in streams if aligner.buffered(p))
        rounds_without_release = 0 if released or waiting_only_on_stalls else rounds_without_release + 1
        assert rounds_without_release <= RULES.idle_timeout_s + 2, "buffered records held hostage"
        clocks.tick()
    assert done == {p: len(s) for p, s in streams.items()}, "the aligner stopped releasing"
    assert aligner.total_buffered == 0
    for p, stream in streams.items():
        for i, (kind, _) in enumerate(stream):
            verdict = verdicts[(p, i)]
            if kind == "future_wall":
                assert verdict == TOO_EARLY
            elif kind == "future_stream":
                # an outlier is told by a later, much earlier record of its own partition; without one (the end
                # of its partition) it waits for the stream and goes out on time, after which the stream's clock
                # is that far ahead too
                followed = any(k in ("valid", "late") for k, _ in stream[i + 1:])
                assert verdict == TOO_EARLY or not followed or polluted_at[(p, i)], verdict
            elif kind == "unreadable":
                assert verdict == NO_TIME
            else:
                assert verdict in (ON_TIME, LATE)
    assert aligner.late_total == sum(v == LATE for v in verdicts.values())
    assert aligner.too_early_total == sum(v == TOO_EARLY for v in verdicts.values())


def test_a_record_far_ahead_at_a_partitions_head_does_not_stop_the_partition():
    clocks = Clocks()
    aligner = EventTimeAligner(rules=RULES, clock=lambda: clocks.mono, wall_clock=lambda: clocks.wall)
    aligner.add("b", ["b0"], [STREAM_START_S])
    assert aligner.take({"b": False}, 10) == {"b": ["b0"]}
    year_9999_like = STREAM_START_S + 400 * DAY_S
    aligner.add("a", ["a0", "a1", "a2"], [year_9999_like, STREAM_START_S + 10.0, STREAM_START_S + 20.0])
    aligner.add("b", ["b1"], [STREAM_START_S + 30.0])
    released = aligner.take_released({"a": False, "b": False}, 10)
    assert [r.record for r in released["a"]] == ["a0", "a1", "a2"]
    assert [r.timing for r in released["a"]] == [TOO_EARLY, ON_TIME, ON_TIME]
    assert "ahead of the stream's event time" in released["a"][0].reason


def test_a_late_record_at_the_tail_of_a_partition_holds_nobody_back():
    clocks = Clocks()
    aligner = EventTimeAligner(rules=RULES, clock=lambda: clocks.mono, wall_clock=lambda: clocks.wall)
    aligner.add("a", ["a0"], [STREAM_START_S + DAY_S])
    aligner.add("b", ["b0"], [STREAM_START_S + DAY_S])
    assert aligner.take({"a": False, "b": False}, 10) == {"a": ["a0"], "b": ["b0"]}
    aligner.add("a", ["a1", "a2"], [STREAM_START_S + DAY_S + 60, STREAM_START_S])  # a day late, last buffered
    aligner.add("b", ["b1"], [STREAM_START_S + DAY_S + 120])
    released = aligner.take_released({"a": False, "b": False}, 10)
    assert {k: [r.record for r in v] for k, v in released.items()} == {"a": ["a1", "a2"], "b": ["b1"]}
    assert released["a"][1].timing == LATE and aligner.late_total == 1


def test_an_idle_partition_stops_holding_the_others_after_the_time_out():
    clocks = Clocks()
    aligner = EventTimeAligner(rules=RULES, clock=lambda: clocks.mono, wall_clock=lambda: clocks.wall)
    aligner.add("a", ["a0", "a1"], [STREAM_START_S, STREAM_START_S + 600.0])
    at_end = {"a": False, "b": False}  # b has backlog on the broker and delivers nothing
    assert aligner.take(at_end, 10) == {}
    clocks.tick(RULES.idle_timeout_s / 2)
    assert aligner.take(at_end, 10) == {}
    assert aligner.idle() == []
    clocks.tick(RULES.idle_timeout_s)
    assert aligner.take(at_end, 10) == {"a": ["a0", "a1"]}
    assert aligner.idle() == ["b"]
    aligner.add("a", ["a2"], [STREAM_START_S + 7_200.0])
    aligner.add("b", ["b0"], [STREAM_START_S + 300.0])  # delivers again: bounds the others again
    assert aligner.take(at_end, 10) == {"b": ["b0"]}
    assert aligner.idle() == []


def test_a_partition_that_just_reached_its_end_holds_the_others_for_the_grace_only():
    """A replay's records of one moment reach the partitions milliseconds apart: a partition at its end still
    bounds the others with its latest event time for ``end_grace_s``, so its next records are not found late."""
    clocks = Clocks()
    rules = EventTimeRules(slack_s=300.0, max_future_skew_s=DAY_S, idle_timeout_s=30.0, max_buffered=400,
                           end_grace_s=0.5)
    aligner = EventTimeAligner(rules=rules, clock=lambda: clocks.mono, wall_clock=lambda: clocks.wall)
    aligner.add("a", ["a0"], [STREAM_START_S])
    aligner.add("b", ["b0"], [STREAM_START_S])
    assert aligner.take({"a": False, "b": False}, 10) == {"a": ["a0"], "b": ["b0"]}
    aligner.add("a", ["a1", "a2"], [STREAM_START_S + 200.0, STREAM_START_S + 900.0])
    assert aligner.take({"a": True, "b": True}, 10) == {"a": ["a1"]}, "a2 lies beyond b's latest + slack"
    clocks.tick(0.2)
    aligner.add("b", ["b1"], [STREAM_START_S + 600.0])  # b's batch arrives 200 ms later: on time, before a2
    released = aligner.take_released({"a": True, "b": True}, 10)
    assert {k: [r.record for r in v] for k, v in released.items()} == {"a": ["a2"], "b": ["b1"]}
    assert [r.timing for r in released["b"]] == [ON_TIME] and aligner.late_total == 0
    aligner.add("a", ["a3"], [STREAM_START_S + 5_000.0])
    assert aligner.take({"a": True, "b": True}, 10) == {}
    clocks.tick(0.6)  # b stays at its end past the grace: it bounds nothing
    assert aligner.take({"a": True, "b": True}, 10) == {"a": ["a3"]}


def test_records_held_back_at_a_partitions_end_start_no_new_grace_when_released():
    """The end of a replay: c's last record waits for a's grace; once released, c has had its grace (its records
    arrived with a's), so b's last record follows at once instead of one grace later."""
    clocks = Clocks()
    rules = EventTimeRules(slack_s=300.0, max_future_skew_s=DAY_S, idle_timeout_s=30.0, max_buffered=400,
                           end_grace_s=0.5)
    aligner = EventTimeAligner(rules=rules, clock=lambda: clocks.mono, wall_clock=lambda: clocks.wall)
    for key in "abc":
        aligner.add(key, [f"{key}0"], [STREAM_START_S])
    assert aligner.take({"a": False, "b": False, "c": False}, 10) == {"a": ["a0"], "b": ["b0"], "c": ["c0"]}
    aligner.add("b", ["b1"], [STREAM_START_S + 1_000.0])
    aligner.add("c", ["c1"], [STREAM_START_S + 400.0])
    at_end = {"a": True, "b": True, "c": True}
    assert aligner.take(at_end, 10) == {}, "a bounds the others for its grace"
    clocks.tick(0.3)
    assert aligner.take(at_end, 10) == {}
    clocks.tick(0.3)  # a's grace is over; c1 is released, b1 lies beyond c's latest + slack
    assert aligner.take(at_end, 10) == {"c": ["c1"]}
    assert aligner.take(at_end, 10) == {"b": ["b1"]}, "c's grace ran from its arrival, with a's"


def test_without_an_end_grace_a_partition_at_its_end_bounds_nothing():
    aligner = EventTimeAligner(rules=EventTimeRules(slack_s=300.0, end_grace_s=0.0))
    aligner.add("a", ["a0"], [STREAM_START_S])
    aligner.add("b", ["b0"], [STREAM_START_S])
    assert aligner.take({"a": False, "b": False}, 10) == {"a": ["a0"], "b": ["b0"]}
    aligner.add("a", ["a1"], [STREAM_START_S + 900.0])
    assert aligner.take({"a": True, "b": True}, 10) == {"a": ["a1"]}


def test_a_foreign_partition_whose_floor_does_not_move_is_idle_after_the_time_out():
    clocks = Clocks()
    aligner = EventTimeAligner(rules=RULES, clock=lambda: clocks.mono, wall_clock=lambda: clocks.wall)
    aligner.add("a", ["a0"], [STREAM_START_S + DAY_S])
    floors = {"c": -math.inf}  # another worker's partition, its owner never published
    assert aligner.take({"a": True}, 10, floors) == {}
    clocks.tick(RULES.idle_timeout_s + 1)
    assert aligner.take({"a": True}, 10, floors) == {"a": ["a0"]}


def test_a_full_buffer_releases_its_earliest_records_when_the_watermark_is_held():
    rules = EventTimeRules(slack_s=3_600.0, max_future_skew_s=DAY_S, idle_timeout_s=math.inf, max_buffered=50)
    clocks = Clocks()
    aligner = EventTimeAligner(rules=rules, clock=lambda: clocks.mono, wall_clock=lambda: clocks.wall)
    times = [STREAM_START_S + 60.0 * i for i in range(60)]
    aligner.add("a", list(range(60)), times)
    at_end = {"a": False, "b": False}  # b never delivers and never times out
    assert aligner.room() == 0
    assert aligner.take(at_end, 20) == {"a": list(range(20))}
    assert aligner.forced_total == 20 and aligner.total_buffered == 40
    assert aligner.take(at_end, 20) == {}  # under the bound again: the watermark rules


@pytest.mark.parametrize("name, kwargs", [
    ("slack_s", {"slack_s": -1.0}), ("max_future_skew_s", {"max_future_skew_s": float("nan")}),
    ("idle_timeout_s", {"idle_timeout_s": -5.0}), ("max_buffered", {"max_buffered": 0}),
])
def test_rules_reject_bad_bounds_naming_the_field(name, kwargs):
    with pytest.raises(ValueError, match=name):
        EventTimeRules(**kwargs)


def test_before_anything_is_released_the_wall_clock_judges_the_future():
    clocks = Clocks()
    aligner = EventTimeAligner(rules=RULES, clock=lambda: clocks.mono, wall_clock=lambda: clocks.wall)
    aligner.add("a", ["a0", "a1"], [WALL_START_S + 2 * DAY_S, WALL_START_S - 5.0])
    released = aligner.take_released({"a": True}, 10)["a"]
    assert [r.timing for r in released] == [TOO_EARLY, ON_TIME]
    assert "ahead of the stream's event time" in released[0].reason or "wall clock" in released[0].reason
