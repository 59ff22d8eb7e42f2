"""Event-time alignment of the transaction partitions: a watermark over what they may still deliver.

Why: a terminal's features count the transactions at that terminal in ``(t - d - w, t - d]`` (``d`` the label
delay, 7 days), from *every* partition (transactions are keyed by customer).  A partition that runs more than
``d`` ahead in event time of another scores transactions whose windows miss the other's older transactions.  A
partition that falls behind is limited too: terminal state is trimmed behind the terminal's newest transaction
with a margin of ``online.STATE_TRIM_SLACK_S`` (1 day), so a transaction more than that behind may find its
window already trimmed.  Both bounds hold when the partitions stay within a small event-time skew of each other.

The rule (:class:`EventTimeAligner`), per worker, over its assigned partitions, relies on each partition being in
event-time order and on each released batch being scored in event-time order (the pipeline sorts it):

* each partition's *floor* is a lower bound of the event time of anything it may still deliver after its
  buffer: the event time of its last buffered record (later records are not earlier); a partition with nothing
  buffered that is at its end (position >= highwater) has no floor and holds nothing back; one with backlog but
  nothing buffered (a fetch returned no data for it, or it was not fetched yet) counts with the latest event time
  released from it, or ``-inf`` (holding every partition back until it is fetched) when nothing was released yet;
* the watermark is ``min(floors) + slack``; buffered records at or below it are released earliest event time
  first (up to the batch size), each partition's as a prefix of its buffer in offset order; the rest stays
  buffered for the next round and offsets are committed only up to what was processed.

So every record still pending after a batch (buffered: not earlier than the batch's latest, by the merge; not
fetched yet: not earlier than its partition's floor) is at most ``slack`` earlier than anything the batch scored.
A worker that owns every partition thus works through a fetched backlog in full batches.

Records without a readable event time (bad JSON, missing field: they become dead letters and touch no state)
never wait; records behind one of them in the same partition keep their place.

Event time that cannot be held hostage (:class:`EventTimeRules`; the rules of bounded out-of-orderness with
idleness, as stream processors with watermarks apply them):

* a partition's floor is the *latest* event time it has delivered (buffered or released), never the event time
  of an earlier record that arrives after it: a late record lowers no floor and so holds nobody back;
* a record later than the wall clock by more than ``max_future_skew_s`` is *too early*: it waits for nothing
  and is released at once with the verdict :data:`TOO_EARLY` (the worker sends it to the dead-letter topic with
  the reason).  So is a record at a partition's head that lies more than the skew ahead of the stream's
  event-time clock *and* of a later record of its own partition (an outlier: a partition that is ahead as a
  whole is not judged).  The clock is the latest watermark base (the earliest bound of the partitions) at which
  records were released, advanced by the wall-clock time elapsed since (a live stream that pauses is not judged
  against its old event time; one partition's outlier does not move it); before anything is released it is the
  earliest buffered event time.  Such a record waits until :data:`OUTLIER_WINDOW` records of its partition
  follow it (holding back only its own partition, never the others); a partition at its end, or ahead as a
  whole, is left alone;
* a record earlier than the latest event time released by more than ``slack_s`` is *late*: it is released at
  once (when its partition's earlier records are) with the verdict :data:`LATE`, and counted;
* a partition that holds the others back without delivering (backlog but nothing fetched, or another worker's
  partition whose published floor does not move) for more than ``idle_timeout_s`` is *idle* and bounds nothing
  until it delivers again;
* at most ``max_buffered`` records are held back; when the buffer is full and the watermark releases nothing,
  the earliest records are released anyway (counted in :attr:`EventTimeAligner.forced_total`).

Across workers (each sees only its own partitions), every worker publishes per partition a
:class:`PartitionProgress` (next offset to process, its event time when buffered, latest event time processed) in
the shared store after each batch's state is written, and reads the others' progress with the broker's end offsets
(asked first): a foreign partition with records beyond its published offset counts with its published head, else
its latest processed event time (a lower bound), else ``-inf`` (:func:`foreign_floor`).  Stale views are lower
bounds, so they only delay; the owners keep publishing, so the workers do not wait on each other forever.

Guarantee (each partition in event-time order, as a producer keyed by customer that sends in time order makes it;
every worker runs this rule): no transaction is scored more than ``slack`` after a transaction of any partition
that is still pending when its batch is released.  With ``slack`` below the label delay and the trim margin,
features equal the batch path.

Not guaranteed: a partition that receives records much older than what it already holds (a producer that is
itself days behind) does not hold the others back, since only what the broker holds is aligned; a partition
whose owner does not publish (an older worker) holds the others back until its progress
appears.

Where the progress is kept: ``stream.state.keys`` (``<p>:progress:<topic>:<partition>``).
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import orjson

from fraudstream.detectors.schema import DEFAULT_EVENT_TIME_RANGE, EventTimeRange, InvalidEvent, parse_timestamp

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")

#: Default slack (s) of the watermark over the earliest pending record: far below the label delay (7 days) and
#: the terminal state's trim margin (1 day), large enough that real-time jitter between partitions never waits.
DEFAULT_EVENT_TIME_SLACK_S = 3_600.0
#: Wire key of a transaction's event time.
EVENT_TIME_KEY = "timestamp"
#: Default largest lead (s) of a record's event time over the stream's event-time clock (or the wall clock).
DEFAULT_MAX_FUTURE_SKEW_S = 86_400.0
#: Default time (s, wall) after which a partition that holds the others back without delivering is idle.
DEFAULT_IDLE_TIMEOUT_S = 30.0
#: Default bound of the records held back (fetched, not released) by one worker.
DEFAULT_MAX_BUFFERED = 50_000

#: A record far ahead of the stream's clock is told from a partition that is ahead as a whole by this many later
#: records of its partition (it waits, holding back only its own partition, until they are fetched).
OUTLIER_WINDOW = 64

#: Verdicts of a released record (:attr:`Released.timing`).
ON_TIME = "on_time"
LATE = "late"
TOO_EARLY = "too_early"
NO_TIME = "no_time"


def decode_event(value: bytes | None, time_range: EventTimeRange | None = DEFAULT_EVENT_TIME_RANGE
                 ) -> tuple[dict[str, Any] | None, float | None]:
    """A transaction's wire JSON decoded once: (the JSON object or None, its event time in epoch s or None).

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
    try:
        timestamp = parse_timestamp(data[EVENT_TIME_KEY])
    except (KeyError, InvalidEvent):
        return data, None
    if time_range is not None and not time_range.earliest_s <= timestamp < time_range.latest_s:
        return data, None
    return data, (timestamp if math.isfinite(timestamp) else None)


def event_time_of(value: bytes | None, time_range: EventTimeRange | None = DEFAULT_EVENT_TIME_RANGE
                  ) -> float | None:
    """Event time (epoch s) of a transaction's wire JSON; None when it cannot be read (it will be a dead letter)."""
    return decode_event(value, time_range)[1]


@dataclass(frozen=True)
class EventTimeRules:
    """Bounds of event-time alignment (see the module docstring).

    slack_s : release slack (s of event time) over the earliest pending record; also the out-of-orderness beyond
        which a record is late.
    max_future_skew_s : largest lead (s) of a record over the stream's event-time clock; ``inf`` turns the rule off
        (the wall-clock bound then stays off too).
    idle_timeout_s : wall time (s) after which a partition that holds the others back without delivering is
        ignored; ``inf`` never.
    max_buffered : largest number of records held back; beyond it the earliest are released anyway.
    """

    slack_s: float = DEFAULT_EVENT_TIME_SLACK_S
    max_future_skew_s: float = DEFAULT_MAX_FUTURE_SKEW_S
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    max_buffered: int = DEFAULT_MAX_BUFFERED

    def __post_init__(self) -> None:
        for name in ("slack_s", "max_future_skew_s", "idle_timeout_s"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
        if not isinstance(self.max_buffered, int) or self.max_buffered < 1:
            raise ValueError(f"max_buffered: expected an integer >= 1, got {self.max_buffered!r}")


#: Rules that only align (no future, idle or buffer bounds): the behaviour of a bare ``EventTimeAligner(slack)``.
def alignment_only(slack_s: float) -> EventTimeRules:
    return EventTimeRules(slack_s=slack_s, max_future_skew_s=math.inf, idle_timeout_s=math.inf,
                          max_buffered=2**62)


@dataclass(frozen=True, slots=True)
class Released(Generic[R]):
    """A record released by :meth:`EventTimeAligner.take_released`.

    event_time : its event time (s), None when unreadable.
    timing : :data:`ON_TIME`, :data:`LATE`, :data:`TOO_EARLY` (send it to the dead-letter topic with ``reason``)
        or :data:`NO_TIME` (unreadable: the parser gives the reason).
    """

    record: R
    event_time: float | None
    timing: str
    reason: str | None = None


def _iso(epoch_s: float) -> str:
    try:
        return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return f"{epoch_s!r} s"


class _Entry:
    """A buffered record: its event time for alignment (None: waits for nothing) and its verdict."""

    __slots__ = ("event_time", "record", "timing", "reason", "raw_time")

    def __init__(self, raw_time: float | None, record: Any, timing: str, reason: str | None = None) -> None:
        self.raw_time = raw_time
        self.event_time = raw_time if timing in (ON_TIME, LATE) else None
        self.record = record
        self.timing = timing
        self.reason = reason


class EventTimeAligner(Generic[K, R]):
    """Buffers fetched records per partition and releases those at or below the event-time watermark.

    Parameters
    ----------
    slack_s : how far (s of event time) beyond the earliest pending record of any partition records are released
        (used when ``rules`` is not given: alignment only, no future, idle or buffer bounds).
    rules : the full rules (:class:`EventTimeRules`); its ``slack_s`` wins over ``slack_s``.
    clock : monotonic clock (s) for idle time-outs.
    wall_clock : wall clock (epoch s) for the event-time clock of live traffic.
    """

    def __init__(self, slack_s: float = DEFAULT_EVENT_TIME_SLACK_S, rules: EventTimeRules | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        if not slack_s >= 0:
            raise ValueError(f"slack_s: expected a number >= 0, got {slack_s!r}")
        self.rules = rules if rules is not None else alignment_only(float(slack_s))
        self.slack_s = float(self.rules.slack_s)
        self._clock = clock
        self._wall_clock = wall_clock
        self._buffers: dict[K, deque[_Entry]] = {}
        self._released_to: dict[K, float] = {}
        self._seen_to: dict[K, float] = {}  # latest on-time event time delivered per partition
        self._total = 0
        #: the stream's event-time clock (s): latest finite watermark base (earliest bound of the partitions) at a
        #: release, and the wall time (epoch s) when it was reached.
        self._clock_event_s: float | None = None
        self._clock_wall_s = 0.0
        self._last_base: float = math.inf  # earliest bound at the last watermark
        #: latest on-time event time released (s): a record more than the slack earlier is late.
        self._latest_released: float | None = None
        #: per holding partition (own or foreign): (its bound, monotonic time since when it is unchanged).
        self._holding: dict[Any, tuple[float | None, float]] = {}
        #: records released as late / too early / beyond the watermark because the buffer was full, so far.
        self.late_total = 0
        self.too_early_total = 0
        self.forced_total = 0

    # ---- the event-time clock and the verdict of a record ------------------------------------------------------
    def event_clock(self) -> float | None:
        """The stream's event time now (s): the latest watermark base of a release, plus the wall time since;
        before the first release the earliest buffered event time (None: nothing buffered)."""
        if self._clock_event_s is None:
            heads = [h for h in (self.head(k) for k in self._buffers) if h is not None]
            return min(heads) if heads else None
        return self._clock_event_s + max(0.0, self._wall_clock() - self._clock_wall_s)

    def _judge(self, event_time: float | None) -> tuple[str, str | None]:
        """Verdict of a record when it is fetched: unreadable, ahead of the wall clock, late, or on time."""
        if event_time is None:
            return NO_TIME, None
        skew = self.rules.max_future_skew_s
        if math.isfinite(skew):
            wall = self._wall_clock()
            if event_time > wall + skew:
                return TOO_EARLY, (f"timestamp {_iso(event_time)} is {(event_time - wall) / 3600:.1f} h ahead of "
                                   f"the wall clock {_iso(wall)} (largest lead {skew:g} s)")
        latest = self._latest_released
        if latest is not None and event_time < latest - self.slack_s:
            return LATE, None
        return ON_TIME, None

    def add(self, key: K, records: Sequence[R], event_times: Sequence[float | None]) -> None:
        """Append fetched records of one partition (in offset order) with their event times (None: unreadable)."""
        if len(records) != len(event_times):
            raise ValueError(f"partition {key!r}: {len(records)} records but {len(event_times)} event times")
        buffer = self._buffers.setdefault(key, deque())
        seen = self._seen_to.get(key, -math.inf)
        for event_time, record in zip(event_times, records):
            timing, reason = self._judge(event_time)
            entry = _Entry(event_time, record, timing, reason)
            if entry.event_time is not None and entry.event_time > seen:
                seen = entry.event_time
            buffer.append(entry)
        if seen > -math.inf:
            self._seen_to[key] = seen
        self._total += len(records)

    def buffered(self, key: K) -> int:
        """Records of ``key`` fetched and not released yet."""
        buffer = self._buffers.get(key)
        return len(buffer) if buffer else 0

    @property
    def total_buffered(self) -> int:
        """Records held back (fetched, not released) over every partition."""
        return self._total

    def room(self) -> int:
        """How many more records may be fetched into the buffer (the bound of ``rules.max_buffered``)."""
        return max(0, self.rules.max_buffered - self._total)

    def forget(self, key: K) -> None:
        """Drop a partition's buffer (it was revoked: its next owner reads from the committed offset)."""
        buffer = self._buffers.pop(key, None)
        if buffer:
            self._total -= len(buffer)
        self._released_to.pop(key, None)
        self._seen_to.pop(key, None)
        self._holding.pop(key, None)

    def retain(self, keys: Iterable[K]) -> None:
        """Drop the buffers of every partition not in ``keys``."""
        keep = set(keys)
        for key in [k for k in set(self._buffers) | set(self._released_to) if k not in keep]:
            self.forget(key)

    def released_to(self, key: K) -> float | None:
        """Latest event time released of the partition since it was assigned (None: nothing yet)."""
        return self._released_to.get(key)

    def first(self, key: K) -> R | None:
        """The partition's next buffered record (None: nothing buffered)."""
        buffer = self._buffers.get(key)
        return buffer[0].record if buffer else None

    def head(self, key: K) -> float | None:
        """Event time of the partition's next record that has one (None: nothing such buffered)."""
        for entry in self._buffers.get(key, ()):
            if entry.event_time is not None:
                return entry.event_time
        return None

    def tail(self, key: K) -> float | None:
        """Event time of the partition's last buffered record that has one (None: nothing such buffered)."""
        for entry in reversed(self._buffers.get(key, ())):
            if entry.event_time is not None:
                return entry.event_time
        return None

    def _floor(self, key: K, ended: bool) -> float | None:
        """Lower bound of what the partition may still deliver after its buffer (None: bounds nothing)."""
        if self.head(key) is not None:
            return self._seen_to.get(key)
        if ended:
            return None
        return self._released_to.get(key, -math.inf)

    def _bounds(self, at_end: Mapping[K, bool], floors: Mapping[Any, float] | None) -> dict[Any, float]:
        """Every partition's bound, without those idle for longer than the time-out."""
        bounds: dict[Any, float] = {}
        for key, ended in at_end.items():
            bound = self._floor(key, ended)
            if bound is not None:
                bounds[key] = bound
        starving = set(self.starving(at_end))
        for key, bound in (floors or {}).items():
            bounds[key] = bound
            starving.add(key)  # a foreign partition delivers nothing here: idle when its floor does not move
        timeout = self.rules.idle_timeout_s
        if not math.isfinite(timeout):
            return bounds
        now = self._clock()
        holding: dict[Any, tuple[float | None, float]] = {}
        for key in starving:
            bound = bounds.get(key)
            previous = self._holding.get(key)
            since = previous[1] if previous is not None and previous[0] == bound else now
            holding[key] = (bound, since)
            if now - since > timeout:
                del bounds[key]
        self._holding = holding
        return bounds

    def idle(self) -> list[Any]:
        """Partitions (own or foreign) ignored at the last watermark because they held the others back idle."""
        timeout = self.rules.idle_timeout_s
        now = self._clock()
        return sorted((k for k, (_, since) in self._holding.items() if now - since > timeout), key=repr)

    def watermark(self, at_end: Mapping[K, bool], floors: Mapping[Any, float] | None = None) -> float:
        """Latest event time (s) that may be released now.

        Parameters
        ----------
        at_end : every assigned partition -> True when nothing lies beyond its buffer on the broker.
        floors : lower bounds of the next pending event time of partitions this aligner does not hold (other
            workers' partitions, see :func:`foreign_floor`); ``-inf`` holds everything back.

        Each assigned partition with records buffered counts with the latest event time it delivered (what it
        delivers later is not earlier, or late); one with backlog but nothing buffered with the latest event
        time released from it, or ``-inf`` when nothing was released since it was assigned; one at its end with
        nothing buffered not at all; an idle one (see :class:`EventTimeRules`) not at all.  Returns ``+inf``
        when nothing bounds the release.
        """
        bounds = self._bounds(at_end, floors)
        self._last_base = min(bounds.values()) if bounds else math.inf
        return self._last_base + self.slack_s

    def starving(self, at_end: Mapping[K, bool]) -> list[K]:
        """Partitions that may hold the others back for want of records: backlog, no event time buffered."""
        return [key for key, ended in at_end.items() if not ended and self.head(key) is None]

    def take(self, at_end: Mapping[K, bool], max_records: int,
             floors: Mapping[Any, float] | None = None) -> dict[K, list[R]]:
        """Release up to ``max_records`` records at or below the watermark, earliest event time first.

        Only partitions in ``at_end`` (the assigned ones) are released.  Each partition's released records are a
        prefix of its buffer, in offset order; the rest stays buffered.  See :meth:`take_released` for the
        verdict of each record.
        """
        return {key: [r.record for r in released]
                for key, released in self.take_released(at_end, max_records, floors).items()}

    def take_released(self, at_end: Mapping[K, bool], max_records: int,
                      floors: Mapping[Any, float] | None = None) -> dict[K, list[Released[R]]]:
        """:meth:`take`, with each record's event time and verdict (:class:`Released`)."""
        if max_records < 1:
            raise ValueError(f"max_records: expected >= 1, got {max_records}")
        holds = self._judge_outliers(at_end)
        limit = self.watermark(at_end, floors)
        counts = self._counts(at_end, max_records, limit, holds)
        if not counts and self._total >= self.rules.max_buffered:
            counts = self._counts(at_end, max_records, math.inf, {})
            self.forced_total += sum(counts.values())
        out: dict[K, list[Released[R]]] = {}
        released_to = -math.inf
        for key, count in counts.items():
            buffer = self._buffers[key]
            released = [buffer.popleft() for _ in range(count)]
            self._total -= count
            timed = [e.event_time for e in released if e.event_time is not None]
            if timed:  # late ones too: what was processed of the partition, published for the other workers
                self._released_to[key] = max(max(timed), self._released_to.get(key, -math.inf))
            times = [e.event_time for e in released if e.event_time is not None and e.timing == ON_TIME]
            if times:
                latest = max(times)
                if self._latest_released is None or latest > self._latest_released:
                    self._latest_released = latest
                released_to = max(released_to, latest)
            for entry in released:
                if entry.timing == LATE:
                    self.late_total += 1
                elif entry.timing == TOO_EARLY:
                    self.too_early_total += 1
            out[key] = [Released(e.record, e.raw_time, e.timing, e.reason) for e in released]
        # the clock moves to what was released, but never past the earliest bound of the partitions
        clock = min(released_to, self._last_base)
        if math.isfinite(clock) and (self._clock_event_s is None or clock > self._clock_event_s):
            self._clock_event_s, self._clock_wall_s = clock, self._wall_clock()
        return out

    def _judge_outliers(self, at_end: Mapping[K, bool]) -> dict[K, int]:
        """Judge the buffered records that lie more than the skew ahead of the stream's event-time clock.

        Such a record is too early when its own partition later delivers a record more than the skew earlier
        (an outlier: it would hold its partition back until the stream reaches it); while fewer than
        :data:`OUTLIER_WINDOW` records follow it and more is on the broker it waits for the next fetch.  A
        partition that is ahead as a whole (its later records are not much earlier), or at its end, is left
        alone: it holds back nobody but itself.  Returns partition -> position in its buffer before which its
        release must stop.
        """
        skew = self.rules.max_future_skew_s
        holds: dict[K, int] = {}
        clock = self.event_clock()
        if not math.isfinite(skew) or clock is None:
            return holds
        ahead = clock + skew
        for key, ended in at_end.items():
            buffer = self._buffers.get(key)
            if not buffer or self._seen_to.get(key, -math.inf) <= ahead:
                continue  # nothing buffered lies that far ahead
            later_min, later_count = math.inf, 0
            after: list[tuple[float, int]] = []  # per position: earliest event time after it, records after it
            for entry in reversed(buffer):
                after.append((later_min, later_count))
                if entry.event_time is not None:
                    later_min, later_count = min(later_min, entry.event_time), later_count + 1
            after.reverse()
            for position, (entry, (earliest_after, count_after)) in enumerate(zip(buffer, after)):
                if entry.event_time is None or entry.event_time <= ahead:
                    continue
                if earliest_after < entry.event_time - skew:
                    entry.reason = (f"timestamp {_iso(entry.event_time)} is {(entry.event_time - clock) / 3600:.1f} "
                                    f"h ahead of the stream's event time {_iso(clock)} and of the records after it "
                                    f"in its partition (largest lead {skew:g} s)")
                    entry.event_time, entry.timing = None, TOO_EARLY
                elif count_after < OUTLIER_WINDOW and not ended:
                    holds[key] = position  # too few records after it to tell: wait for the next fetch
                    break
        return holds

    def _counts(self, at_end: Mapping[K, bool], max_records: int, limit: float,
                holds: Mapping[K, int]) -> dict[K, int]:
        """How many records of each partition's buffer prefix to release under ``limit``, earliest first."""
        prefixes: list[list[tuple[float, int, K]]] = []
        for key in at_end:
            prefix: list[tuple[float, int, K]] = []
            effective = -math.inf  # a record that waits for nothing goes with the record before it
            # no more than max_records of one partition can be released
            cut = min(max_records, holds.get(key, max_records))
            for position, entry in enumerate(itertools.islice(self._buffers.get(key, ()), cut)):
                event_time = entry.event_time
                if event_time is not None:
                    if event_time > limit:
                        break
                    effective = max(effective, event_time)
                prefix.append((effective, position, key))
            if prefix:
                prefixes.append(prefix)
        counts: dict[K, int] = {}
        if len(prefixes) == 1:  # one partition to release from: its prefix, already cut at max_records
            counts[prefixes[0][0][2]] = len(prefixes[0])
        for taken, (_, _, key) in enumerate(heapq.merge(*prefixes, key=lambda item: item[0])
                                            if len(prefixes) > 1 else ()):
            if taken >= max_records:
                break
            counts[key] = counts.get(key, 0) + 1
        return counts


@dataclass(frozen=True)
class PartitionProgress:
    """How far the owner of a partition has processed it; published for the workers that own other partitions.

    next_offset : first offset not processed (the state of every record below it is written).
    head : event time (s) of the next pending record, when the owner has it buffered.
    processed_to : latest event time (s) processed since the owner was assigned the partition.
    """

    next_offset: int
    head: float | None = None
    processed_to: float | None = None

    def encode(self) -> bytes:
        return json.dumps([self.next_offset, self.head, self.processed_to]).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> PartitionProgress | None:
        """Inverse of :meth:`encode`; None for a missing or unreadable value (treated as unknown)."""
        if raw is None:
            return None
        try:
            offset, head, processed_to = json.loads(raw)
            return cls(int(offset), None if head is None else float(head),
                       None if processed_to is None else float(processed_to))
        except (ValueError, TypeError):
            return None


def foreign_floor(progress: PartitionProgress | None, end_offset: int) -> float | None:
    """Lower bound of the next pending event time of a partition another worker owns.

    Parameters
    ----------
    progress : what its owner published (None: nothing published, or expired).
    end_offset : the partition's end offset on the broker, asked *before* ``progress`` was read.

    Returns None when nothing is pending (everything below ``end_offset`` is processed), else the owner's head,
    else the latest event time it processed, else ``-inf`` (unknown: hold back until the owner publishes).
    """
    if end_offset <= 0 or (progress is not None and progress.next_offset >= end_offset):
        return None
    if progress is None:
        return -math.inf
    if progress.head is not None:
        return progress.head
    return progress.processed_to if progress.processed_to is not None else -math.inf
