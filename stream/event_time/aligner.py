"""The per-worker event-time watermark: buffers fetched records per partition, releases what it allows.

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


The bounds that keep it from being held hostage (future skew, lateness, idleness, buffer bound) are those of
:mod:`.rules`; what other workers' partitions may still deliver comes from :mod:`.progress`.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from fraudstream.stream.event_time.rules import (
    DEFAULT_EVENT_TIME_SLACK_S,
    LATE,
    NO_TIME,
    ON_TIME,
    OUTLIER_WINDOW,
    TOO_EARLY,
    EventTimeRules,
    Released,
    alignment_only,
    iso_time,
)

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


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
        #: per partition: monotonic time (s) its last records with an event time were fetched into the buffer;
        #: a partition at its end bounds the others for ``end_grace_s`` from then.
        self._arrived_at: dict[K, float] = {}
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
                return TOO_EARLY, (f"timestamp {iso_time(event_time)} is {(event_time - wall) / 3600:.1f} h ahead of "
                                   f"the wall clock {iso_time(wall)} (largest lead {skew:g} s)")
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
        timed = False
        for event_time, record in zip(event_times, records):
            timing, reason = self._judge(event_time)
            entry = _Entry(event_time, record, timing, reason)
            if entry.event_time is not None:
                timed = True
                seen = max(seen, entry.event_time)
            buffer.append(entry)
        if seen > -math.inf:
            self._seen_to[key] = seen
        if timed:
            self._arrived_at[key] = self._clock()
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
        self._arrived_at.pop(key, None)

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
            return self._ended_floor(key)
        return self._released_to.get(key, -math.inf)

    def _ended_floor(self, key: K) -> float | None:
        """Bound of a partition at its end with nothing buffered: the latest event time it delivered while within
        ``end_grace_s`` of its last records' arrival, then None (see :mod:`.rules`).

        The grace runs from the arrival, not from the moment the buffer emptied: records of one moment reach the
        partitions within the grace of each other, so a partition whose last records waited in the buffer (held
        back by another partition's grace) has had its grace by the time they are released; starting a new one
        then made the partitions at the end of a replay hold each other back one grace after another.
        """
        grace = self.rules.end_grace_s
        latest = self._seen_to.get(key)
        if latest is None or not grace > 0:
            return None
        return latest if self._clock() - self._arrived_at[key] <= grace else None

    def _held_floor(self, key: K, position: int) -> float:
        """Lower bound of what a partition held at ``position`` (see :meth:`_judge_outliers`) may still deliver:
        the records from there on are not judged yet, and those after the held one may be as early as the last
        record before it."""
        buffer = self._buffers[key]
        for i in range(min(position, len(buffer)) - 1, -1, -1):
            event_time = buffer[i].event_time
            if event_time is not None:
                return float(event_time)
        return self._released_to.get(key, -math.inf)

    def _bounds(self, at_end: Mapping[K, bool], floors: Mapping[Any, float] | None,
                holds: Mapping[K, int] | None = None) -> dict[Any, float]:
        """Every partition's bound, without those idle for longer than the time-out."""
        bounds: dict[Any, float] = {}
        for key, ended in at_end.items():
            bound = self._floor(key, ended)
            if bound is not None:
                bounds[key] = bound
        for key, position in (holds or {}).items():
            bounds[key] = min(bounds.get(key, math.inf), self._held_floor(key, position))
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

    def watermark(self, at_end: Mapping[K, bool], floors: Mapping[Any, float] | None = None,
                  holds: Mapping[K, int] | None = None) -> float:
        """Latest event time (s) that may be released now.

        Parameters
        ----------
        at_end : every assigned partition -> True when nothing lies beyond its buffer on the broker.
        floors : lower bounds of the next pending event time of partitions this aligner does not hold (other
            workers' partitions, see :func:`foreign_floor`); ``-inf`` holds everything back.
        holds : partitions whose release stops at a buffer position (a record far ahead waiting to be judged,
            :meth:`_judge_outliers`) -> that position; such a partition counts with the event time of its last
            record before the position, since the records after the held one may be that early.

        Each assigned partition with records buffered counts with the latest event time it delivered (what it
        delivers later is not earlier, or late); one with backlog but nothing buffered with the latest event
        time released from it, or ``-inf`` when nothing was released since it was assigned; one at its end with
        nothing buffered not at all; an idle one (see :class:`EventTimeRules`) not at all.  Returns ``+inf``
        when nothing bounds the release.
        """
        bounds = self._bounds(at_end, floors, holds)
        self._last_base = min(bounds.values()) if bounds else math.inf
        return self._last_base + self.slack_s

    def describe(self, at_end: Mapping[K, bool], floors: Mapping[Any, float] | None = None) -> str:
        """Why records are held back, for a log line: per partition its buffer, head, bound and outlier hold."""
        holds = self._judge_outliers(at_end)
        bounds = self._bounds(at_end, floors, holds)
        parts = []
        for key in sorted(set(at_end) | set(floors or {}), key=repr):
            parts.append(f"{key!r}: buffered={self.buffered(key)} head={self.head(key)} at_end={at_end.get(key)} "
                         f"bound={bounds.get(key)} hold_at={holds.get(key)}")
        return (f"watermark={min(bounds.values()) + self.slack_s if bounds else math.inf} "
                f"event_clock={self.event_clock()} " + "; ".join(parts))

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
        limit = self.watermark(at_end, floors, holds)
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

    def _eligible_all(self, at_end: Mapping[K, bool], max_records: int, limit: float,
                      holds: Mapping[K, int]) -> dict[K, int] | None:
        """:meth:`_counts` without looking at single records, when that is possible (None when it is not).

        A partition whose latest event time delivered is at or below ``limit`` releases its whole buffer (up to
        its outlier hold and ``max_records``); when every partition with records is such and together they hold
        at most ``max_records`` (or only one has records), no merge by event time is needed.  That is every
        round of a one-partition worker, and of a worker that keeps up.
        """
        counts: dict[K, int] = {}
        total = 0
        for key in at_end:
            buffer = self._buffers.get(key)
            if not buffer:
                continue
            if self._seen_to.get(key, -math.inf) > limit:
                return None
            count = min(len(buffer), max_records, holds.get(key, max_records))
            if count:
                counts[key] = count
                total += count
        return counts if total <= max_records or len(counts) == 1 else None

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
            # vectorized over the buffer (a replayed backlog lies days ahead of the clock: every record is judged)
            times = np.fromiter((math.nan if e.event_time is None else e.event_time for e in buffer),
                                dtype=np.float64, count=len(buffer))
            timed = ~np.isnan(times)
            # per position: earliest event time after it, and how many timed records follow it
            earliest_after = np.minimum.accumulate(np.where(timed, times, math.inf)[::-1])[::-1]
            earliest_after = np.append(earliest_after[1:], math.inf)
            count_after = np.cumsum(timed[::-1])[::-1] - timed
            with np.errstate(invalid="ignore"):
                candidate = timed & (times > ahead)
                outlier = candidate & (earliest_after < times - skew)
            waiting = candidate & ~outlier & (count_after < OUTLIER_WINDOW) & (not ended)
            stop = int(np.argmax(waiting)) if waiting.any() else len(buffer)
            if stop < len(buffer):
                holds[key] = stop  # too few records after it to tell: wait for the next fetch
            for position in np.flatnonzero(outlier[:stop]).tolist():
                entry = buffer[position]
                lead_h = (times[position] - clock) / 3600
                entry.reason = (f"timestamp {iso_time(times[position])} is {lead_h:.1f} h ahead of the stream's "
                                f"event time {iso_time(clock)} and of the records after it in its partition "
                                f"(largest lead {skew:g} s)")
                entry.event_time, entry.timing = None, TOO_EARLY
        return holds

    def _counts(self, at_end: Mapping[K, bool], max_records: int, limit: float,
                holds: Mapping[K, int]) -> dict[K, int]:
        """How many records of each partition's buffer prefix to release under ``limit``, earliest first."""
        eligible = self._eligible_all(at_end, max_records, limit, holds)
        if eligible is not None:
            return eligible
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

