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
from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

from fraudstream.detectors.schema import InvalidEvent, parse_timestamp

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")

#: Default slack (s) of the watermark over the earliest pending record: far below the label delay (7 days) and
#: the terminal state's trim margin (1 day), large enough that real-time jitter between partitions never waits.
DEFAULT_EVENT_TIME_SLACK_S = 3_600.0
#: Wire key of a transaction's event time.
EVENT_TIME_KEY = "timestamp"


def decode_event(value: bytes | None) -> tuple[dict[str, Any] | None, float | None]:
    """A transaction's wire JSON decoded once: (the JSON object or None, its event time in epoch s or None).

    Either part is None when it cannot be read; the pipeline then reports the event as a dead letter, and
    alignment does not wait for it.
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
    return data, (timestamp if math.isfinite(timestamp) else None)


def event_time_of(value: bytes | None) -> float | None:
    """Event time (epoch s) of a transaction's wire JSON; None when it cannot be read (it will be a dead letter)."""
    return decode_event(value)[1]


class EventTimeAligner(Generic[K, R]):
    """Buffers fetched records per partition and releases those at or below the event-time watermark.

    Parameters
    ----------
    slack_s : how far (s of event time) beyond the earliest pending record of any partition records are released.
    """

    def __init__(self, slack_s: float = DEFAULT_EVENT_TIME_SLACK_S) -> None:
        if not slack_s >= 0:
            raise ValueError(f"slack_s: expected a number >= 0, got {slack_s!r}")
        self.slack_s = float(slack_s)
        self._buffers: dict[K, deque[tuple[float | None, R]]] = {}
        self._released_to: dict[K, float] = {}

    def add(self, key: K, records: Sequence[R], event_times: Sequence[float | None]) -> None:
        """Append fetched records of one partition (in offset order) with their event times (None: unreadable)."""
        if len(records) != len(event_times):
            raise ValueError(f"partition {key!r}: {len(records)} records but {len(event_times)} event times")
        self._buffers.setdefault(key, deque()).extend(zip(event_times, records))

    def buffered(self, key: K) -> int:
        """Records of ``key`` fetched and not released yet."""
        buffer = self._buffers.get(key)
        return len(buffer) if buffer else 0

    @property
    def total_buffered(self) -> int:
        return sum(len(b) for b in self._buffers.values())

    def forget(self, key: K) -> None:
        """Drop a partition's buffer (it was revoked: its next owner reads from the committed offset)."""
        self._buffers.pop(key, None)
        self._released_to.pop(key, None)

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
        return buffer[0][1] if buffer else None

    def head(self, key: K) -> float | None:
        """Event time of the partition's next record that has one (None: nothing such buffered)."""
        for event_time, _ in self._buffers.get(key, ()):
            if event_time is not None:
                return event_time
        return None

    def tail(self, key: K) -> float | None:
        """Event time of the partition's last buffered record that has one (None: nothing such buffered)."""
        for event_time, _ in reversed(self._buffers.get(key, ())):
            if event_time is not None:
                return event_time
        return None

    def watermark(self, at_end: Mapping[K, bool], floors: Mapping[Any, float] | None = None) -> float:
        """Latest event time (s) that may be released now.

        Parameters
        ----------
        at_end : every assigned partition -> True when nothing lies beyond its buffer on the broker.
        floors : lower bounds of the next pending event time of partitions this aligner does not hold (other
            workers' partitions, see :func:`foreign_floor`); ``-inf`` holds everything back.

        Each assigned partition counts with its last buffered event time (what it delivers later is not
        earlier); one with backlog but nothing buffered with the latest event time released from it, or ``-inf``
        when nothing was released since it was assigned; one at its end with nothing buffered not at all.
        Returns ``+inf`` when nothing bounds the release.
        """
        bounds = list(floors.values()) if floors else []
        for key, ended in at_end.items():
            bound = self.tail(key)
            if bound is None and not ended:
                bound = self._released_to.get(key, -math.inf)
            if bound is not None:
                bounds.append(bound)
        return min(bounds) + self.slack_s if bounds else math.inf

    def starving(self, at_end: Mapping[K, bool]) -> list[K]:
        """Partitions that may hold the others back for want of records: backlog, no event time buffered."""
        return [key for key, ended in at_end.items() if not ended and self.head(key) is None]

    def take(self, at_end: Mapping[K, bool], max_records: int,
             floors: Mapping[Any, float] | None = None) -> dict[K, list[R]]:
        """Release up to ``max_records`` records at or below the watermark, earliest event time first.

        Only partitions in ``at_end`` (the assigned ones) are released.  Each partition's released records are a
        prefix of its buffer, in offset order; the rest stays buffered.
        """
        if max_records < 1:
            raise ValueError(f"max_records: expected >= 1, got {max_records}")
        limit = self.watermark(at_end, floors)
        prefixes: list[list[tuple[float, int, K]]] = []
        for key in at_end:
            prefix: list[tuple[float, int, K]] = []
            effective = -math.inf  # an unreadable record goes with the record before it
            # no more than max_records of one partition can be released
            for position, (event_time, _) in enumerate(itertools.islice(self._buffers.get(key, ()), max_records)):
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
        out: dict[K, list[R]] = {}
        for key, count in counts.items():
            buffer = self._buffers[key]
            released = [buffer.popleft() for _ in range(count)]
            times = [t for t, _ in released if t is not None]
            if times:
                self._released_to[key] = max(max(times), self._released_to.get(key, -math.inf))
            out[key] = [record for _, record in released]
        return out


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
