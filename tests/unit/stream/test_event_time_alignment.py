"""The event-time watermark of the stream worker's partitions (pure rule, no broker)."""

import json
import math
import random

import pytest

from fraudstream.stream.event_time import (
    EventTimeAligner,
    EventTimeRules,
    PartitionProgress,
    event_time_of,
    foreign_floor,
)
from fraudstream.stream.state.keys import Keyspace

DAY_S = 86_400.0
SLACK_S = 3_600.0


def add(aligner, key, times):
    """Buffer records named (key, position in the buffer) with the given event times."""
    start = aligner.buffered(key)
    aligner.add(key, [(key, start + i) for i in range(len(times))], list(times))


def test_records_beyond_the_slack_over_a_partitions_last_buffered_event_time_stay_buffered():
    aligner = EventTimeAligner(SLACK_S)
    add(aligner, "a", [0.0, 1_000.0, 2 * DAY_S])
    add(aligner, "b", [500.0, 3_000.0, 4_000.0, 3 * DAY_S])
    at_end = {"a": False, "b": False}  # both have more on the broker, not earlier than their last buffered
    assert aligner.watermark(at_end) == 2 * DAY_S + SLACK_S
    taken = aligner.take(at_end, max_records=100)
    assert taken == {"a": [("a", 0), ("a", 1), ("a", 2)], "b": [("b", 0), ("b", 1), ("b", 2)]}
    assert aligner.buffered("a") == 0 and aligner.buffered("b") == 1
    # a has nothing buffered: it counts with the latest event time released from it, so b's record waits
    assert aligner.watermark(at_end) == 2 * DAY_S + SLACK_S
    assert aligner.take(at_end, max_records=100) == {}
    assert aligner.take({"a": True, "b": False}, max_records=100) == {"b": [("b", 3)]}


def test_one_partition_with_a_backlog_is_released_in_full_batches():
    aligner = EventTimeAligner(SLACK_S)
    times = [i * 60.0 for i in range(1_000)]  # 1000 records over 16 h of event time
    add(aligner, "a", times)
    assert aligner.watermark({"a": False}) == times[-1] + SLACK_S
    assert [len(r) for r in aligner.take({"a": False}, max_records=400).values()] == [400]
    assert [len(r) for r in aligner.take({"a": False}, max_records=700).values()] == [600]


def test_a_partition_with_backlog_that_returned_nothing_holds_every_other_partition_back():
    aligner = EventTimeAligner(SLACK_S)
    add(aligner, "a", [0.0, 10 * DAY_S])
    at_end = {"a": False, "b": False}  # b has records on the broker, none fetched yet
    assert aligner.watermark(at_end) == -math.inf
    assert aligner.starving(at_end) == ["b"]
    assert aligner.take(at_end, max_records=100) == {}
    add(aligner, "b", [DAY_S])
    assert aligner.starving(at_end) == []
    assert aligner.take(at_end, max_records=100) == {"a": [("a", 0)], "b": [("b", 0)]}
    assert aligner.starving(at_end) == ["b"]
    assert aligner.take(at_end, max_records=100) == {}  # b's next record may be as early as DAY_S
    assert aligner.take({"a": False, "b": True}, max_records=100) == {"a": [("a", 1)]}


def test_a_partition_that_returned_nothing_holds_the_others_at_its_last_released_event_time():
    aligner = EventTimeAligner(SLACK_S)
    add(aligner, "a", [0.0])
    add(aligner, "b", [100.0])
    assert aligner.take({"a": True, "b": True}, max_records=10) == {"a": [("a", 0)], "b": [("b", 0)]}
    add(aligner, "a", [DAY_S, DAY_S + SLACK_S, 3 * DAY_S])
    at_end = {"a": False, "b": False}  # b has backlog again, this fetch brought none of it
    assert aligner.released_to("b") == 100.0
    assert aligner.watermark(at_end) == 100.0 + SLACK_S
    assert aligner.take(at_end, max_records=10) == {}
    add(aligner, "b", [DAY_S + 10.0])
    assert aligner.take(at_end, max_records=10) == {"a": [("a", 0), ("a", 1)], "b": [("b", 0)]}


def test_a_partition_at_its_end_does_not_hold_the_others_back():
    aligner = EventTimeAligner(SLACK_S)
    add(aligner, "a", [0.0, 30 * DAY_S])
    at_end = {"a": True, "b": True}  # b: nothing buffered, nothing on the broker
    assert aligner.watermark(at_end) == 30 * DAY_S + SLACK_S
    assert aligner.take(at_end, max_records=100) == {"a": [("a", 0), ("a", 1)]}
    assert aligner.watermark(at_end) == math.inf


def test_unreadable_records_never_wait_and_keep_their_place():
    aligner = EventTimeAligner(SLACK_S)
    add(aligner, "a", [None, 5 * DAY_S, None])
    add(aligner, "b", [0.0])
    at_end = {"a": True, "b": True}
    assert aligner.take(at_end, max_records=100) == {"a": [("a", 0)], "b": [("b", 0)]}
    assert aligner.take(at_end, max_records=100) == {"a": [("a", 1), ("a", 2)]}


def test_a_batch_cut_by_max_records_takes_the_earliest_event_times_as_buffer_prefixes():
    aligner = EventTimeAligner(SLACK_S)
    add(aligner, "a", [0.0, 10.0, 20.0, 30.0])
    add(aligner, "b", [5.0, 15.0, 25.0])
    at_end = {"a": True, "b": True}
    assert aligner.take(at_end, max_records=4) == {"a": [("a", 0), ("a", 1)], "b": [("b", 0), ("b", 1)]}
    assert aligner.take(at_end, max_records=4) == {"a": [("a", 2), ("a", 3)], "b": [("b", 2)]}


def test_unassigned_partitions_are_not_released_and_forgotten_buffers_are_dropped():
    aligner = EventTimeAligner(SLACK_S)
    add(aligner, "a", [0.0])
    add(aligner, "b", [0.0])
    assert aligner.take({"a": True}, max_records=10) == {"a": [("a", 0)]}
    aligner.retain(["a"])
    assert aligner.buffered("b") == 0 and aligner.total_buffered == 0


def test_random_interleavings_never_release_a_record_more_than_the_slack_after_a_pending_one():
    """Simulated fetches that return data for random subsets of partitions, as aiokafka's getmany may."""
    rng = random.Random(7)
    partitions = ["p0", "p1", "p2"]
    streams = {p: sorted(rng.uniform(0, 30 * DAY_S) for _ in range(300)) for p in partitions}
    fetched = {p: 0 for p in partitions}
    done = {p: 0 for p in partitions}
    aligner = EventTimeAligner(SLACK_S)
    total = sum(len(s) for s in streams.values())
    while sum(done.values()) < total:
        for p in partitions:
            if rng.random() < 0.4 and fetched[p] < len(streams[p]):
                chunk = streams[p][fetched[p]:fetched[p] + rng.randint(1, 40)]
                aligner.add(p, chunk, chunk)
                fetched[p] += len(chunk)
        at_end = {p: fetched[p] == len(streams[p]) for p in partitions}
        released = aligner.take(at_end, max_records=rng.randint(1, 60))
        for p, records in released.items():
            assert records == streams[p][done[p]:done[p] + len(records)], "not a prefix in offset order"
            done[p] += len(records)
        # earliest event time still to process after the batch, buffered or on the broker
        pending = [streams[p][done[p]] for p in partitions if done[p] < len(streams[p])]
        if released and pending:
            assert max(max(r) for r in released.values()) <= min(pending) + SLACK_S
    assert aligner.total_buffered == 0


@pytest.mark.parametrize("value, expected", [
    (json.dumps({"timestamp": 1_600_000_012.5}).encode(), 1_600_000_012.5),
    (json.dumps({"timestamp": "2020-09-13T12:26:40Z"}).encode(), 1_600_000_000.0),
    (json.dumps({"timestamp": 12.5}).encode(), None),  # outside the sane range: a dead letter, waits for nothing
    (json.dumps({"timestamp": "9999-12-31T23:59:59Z"}).encode(), None),
    (b"{not json", None),
    (json.dumps({"amount": 1}).encode(), None),
    (None, None),
])
def test_event_time_of_reads_the_wire_timestamp_or_gives_none(value, expected):
    assert event_time_of(value) == expected


def test_invalid_arguments_are_rejected_with_the_name_of_the_argument():
    with pytest.raises(ValueError, match="slack_s"):
        EventTimeAligner(-1.0)
    aligner = EventTimeAligner(SLACK_S)
    with pytest.raises(ValueError, match="max_records"):
        aligner.take({}, max_records=0)
    with pytest.raises(ValueError, match="event times"):
        aligner.add("a", [1, 2], [0.0])


def test_other_workers_partitions_hold_this_one_back_through_their_floors():
    aligner = EventTimeAligner(SLACK_S)
    add(aligner, "a", [0.0, 2 * DAY_S])
    at_end = {"a": True}
    assert aligner.take(at_end, max_records=10, floors={"c": -math.inf}) == {}
    assert aligner.take(at_end, max_records=10, floors={"c": DAY_S}) == {"a": [("a", 0)]}
    assert aligner.take(at_end, max_records=10, floors={"c": DAY_S}) == {}
    assert aligner.take(at_end, max_records=10, floors={"c": 2 * DAY_S - SLACK_S}) == {"a": [("a", 1)]}


@pytest.mark.parametrize("progress, end_offset, expected", [
    (None, 0, None),  # empty partition: nothing pending
    (None, 5, -math.inf),  # records and no published progress: unknown
    (PartitionProgress(5, None, 10.0), 5, None),  # processed up to the end
    (PartitionProgress(3, 20.0, 10.0), 5, 20.0),  # the owner's buffered head
    (PartitionProgress(3, None, 10.0), 5, 10.0),  # not fetched by the owner: its latest processed time
    (PartitionProgress(0, None, None), 5, -math.inf),  # nothing known
])
def test_foreign_floor_is_a_lower_bound_of_the_next_pending_event_time(progress, end_offset, expected):
    assert foreign_floor(progress, end_offset) == expected


def test_partition_progress_round_trips_and_unreadable_values_decode_to_none():
    progress = PartitionProgress(42, 1.5, None)
    assert PartitionProgress.decode(progress.encode()) == progress
    assert PartitionProgress.decode(None) is None
    assert PartitionProgress.decode(b"garbage") is None
    assert Keyspace("fs").progress("transactions", 2) == "fs:progress:transactions:2"


def test_two_workers_sharing_progress_keep_every_partition_within_the_slack_and_finish():
    """Two aligners (workers) with their own partitions of one backlog, exchanging :class:`PartitionProgress`
    through a shared mapping (the store) that each publishes only now and then (stale views)."""
    rng = random.Random(11)
    streams = {p: sorted(rng.uniform(0, 30 * DAY_S) for _ in range(rng.randint(100, 400))) for p in range(3)}
    owners = {0: [0, 2], 1: [1]}  # worker -> its partitions
    aligners = {w: EventTimeAligner(SLACK_S) for w in owners}
    fetched = {p: 0 for p in streams}
    done = {p: 0 for p in streams}
    store: dict[str, bytes] = {}
    total = sum(len(s) for s in streams.values())
    for _ in range(100_000):
        if sum(done.values()) == total:
            break
        w = rng.choice(list(owners))
        aligner = aligners[w]
        for p in owners[w]:
            if rng.random() < 0.5 and fetched[p] < len(streams[p]):
                chunk = streams[p][fetched[p]:fetched[p] + rng.randint(1, 30)]
                aligner.add(p, chunk, chunk)
                fetched[p] += len(chunk)
        at_end = {p: fetched[p] == len(streams[p]) for p in owners[w]}
        floors = {}
        for q, stream in streams.items():
            if q not in owners[w]:
                floor = foreign_floor(PartitionProgress.decode(store.get(Keyspace("fs").progress("tx", q))),
                                      len(stream))
                if floor is not None:
                    floors[q] = floor
        released = aligner.take(at_end, max_records=rng.randint(1, 50), floors=floors)
        for p, records in released.items():
            assert records == streams[p][done[p]:done[p] + len(records)]
            done[p] += len(records)
        pending = [streams[p][done[p]] for p in streams if done[p] < len(streams[p])]
        if released and pending:
            assert max(max(r) for r in released.values()) <= min(pending) + SLACK_S, \
                "a partition ran ahead of another worker's"
        if rng.random() < 0.5:
            for p in owners[w]:
                store[Keyspace("fs").progress("tx", p)] = PartitionProgress(
                    done[p], aligner.head(p), aligner.released_to(p)).encode()
    assert done == {p: len(s) for p, s in streams.items()}, "the workers stopped making progress"


def test_describe_says_which_partition_holds_the_release_back():
    aligner = EventTimeAligner(SLACK_S)
    add(aligner, "a", [DAY_S, DAY_S + 60.0])
    at_end = {"a": False, "b": False}  # b has backlog and nothing fetched: it holds a back at -inf
    assert aligner.take(at_end, max_records=100) == {}
    text = aligner.describe(at_end)
    assert text.startswith("watermark=-inf ")
    assert "'a': buffered=2 head=86400.0 at_end=False bound=86460.0" in text
    assert "'b': buffered=0 head=None at_end=False bound=-inf" in text


def test_a_partition_held_at_a_record_far_ahead_holds_the_others_at_its_last_record_before_it():
    from fraudstream.stream.event_time import EventTimeRules

    # a backlog after a restart: the event-time clock starts at the earliest buffered record, so b's records more
    # than a day later are "ahead", and with fewer than the outlier window after them b's release stops there
    aligner = EventTimeAligner(rules=EventTimeRules(slack_s=SLACK_S, max_future_skew_s=DAY_S),
                               wall_clock=lambda: 2_000_000_000.0)
    add(aligner, "a", [i * 600.0 for i in range(400)])  # 0 .. 66.5 h, many records: ahead as a whole
    add(aligner, "b", [i * 3_000.0 for i in range(40)])  # 0 .. 32.5 h; those after 24 h wait to be judged
    at_end = {"a": False, "b": False}
    taken = aligner.take(at_end, max_records=1_000)
    last_b = max(i for _, i in taken["b"]) * 3_000.0
    assert last_b <= DAY_S < (max(i for _, i in taken["b"]) + 1) * 3_000.0  # b stopped at the held record
    # a went no further than b's last record before the held one, plus the slack
    assert max(i for _, i in taken["a"]) * 600.0 <= last_b + SLACK_S


class _RecordByRecord(EventTimeAligner):
    """The aligner without its shortcuts: every release decided by the per-record scan and merge."""

    def _eligible_all(self, at_end, max_records, limit, holds):
        return None


@pytest.mark.parametrize("seed", range(6))
def test_the_whole_buffer_shortcut_releases_what_the_record_by_record_scan_releases(seed):
    """Replays lie days ahead of the stream's clock: outlier judging is vectorized and whole buffers are released
    without a per-record scan; the records released, their order and their verdicts stay those of the scan."""
    rng = random.Random(seed)
    rules = EventTimeRules(slack_s=SLACK_S, max_future_skew_s=86_400.0)
    fast, slow = EventTimeAligner(rules=rules), _RecordByRecord(rules=rules)
    partitions = rng.randint(1, 3)
    clock = {p: 1_522_540_800.0 for p in range(partitions)}
    offsets = dict.fromkeys(range(partitions), 0)
    gap_s = rng.choice([60.0, 1_000.0, 4_000.0])  # up to 5 days of event time a fetch
    released = 0
    for _ in range(12):
        for p in range(partitions):
            times = []
            for _ in range(rng.randint(0, 120)):
                clock[p] += rng.uniform(1.0, gap_s)
                roll = rng.random()
                times.append(None if roll < 0.03 else clock[p] + rng.uniform(-1, 10) * 3 * 86_400.0 if roll < 0.06
                             else clock[p])
            records = [(p, offsets[p] + i) for i in range(len(times))]
            offsets[p] += len(times)
            fast.add(p, records, times)
            slow.add(p, records, times)
        at_end = {p: rng.random() < 0.5 for p in range(partitions)}
        limit = rng.randint(1, 200)
        got = fast.take_released(at_end, limit)
        expected = slow.take_released(at_end, limit)
        assert {k: [(r.record, r.timing, r.reason) for r in v] for k, v in got.items()} == \
            {k: [(r.record, r.timing, r.reason) for r in v] for k, v in expected.items()}
        released += sum(map(len, got.values()))
    assert released > 0
