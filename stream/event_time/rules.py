"""The bounds of event-time alignment and the verdict of each released record.

The rules (lateness, future skew, idleness, as stream processors with watermarks apply them):

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
* a partition that has just reached its end (nothing buffered, nothing more on the broker) still bounds the others
  with the latest event time it delivered for ``end_grace_s`` (wall) from the arrival of its last records: a
  producer's records of one moment reach the partitions some milliseconds apart (its batches per partition,
  ``linger.ms``), which in a replay running thousands of times faster than event time are many minutes of event
  time; after the grace it bounds nothing (records that waited in the buffer do not start a new grace when they
  are released);
* at most ``max_buffered`` records are held back; when the buffer is full and the watermark releases nothing,
  the earliest records are released anyway (counted in :attr:`EventTimeAligner.forced_total`).

"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from fraudstream.detectors.features.definition import SETTLED_EVENT_TIME_S

R = TypeVar("R")

#: Default slack (s) of the watermark over the earliest pending record: far below the label delay (7 days) and
#: the terminal state's trim margin (1 day), large enough that real-time jitter between partitions never waits.
DEFAULT_EVENT_TIME_SLACK_S = SETTLED_EVENT_TIME_S
#: Default largest lead (s) of a record's event time over the stream's event-time clock (or the wall clock).
DEFAULT_MAX_FUTURE_SKEW_S = 86_400.0
#: Default time (s, wall) after which a partition that holds the others back without delivering is idle.
DEFAULT_IDLE_TIMEOUT_S = 30.0
#: Default grace (s, wall) during which a partition that reached its end still bounds the others (see above):
#: 25 times the replay producer's linger (20 ms); live, a partition quiet for longer than the slack is past it.
DEFAULT_END_GRACE_S = 0.5
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
    end_grace_s : wall time (s) during which a partition that reached its end still bounds the others with the
        latest event time it delivered; 0: at once it bounds nothing.
    """

    slack_s: float = DEFAULT_EVENT_TIME_SLACK_S
    max_future_skew_s: float = DEFAULT_MAX_FUTURE_SKEW_S
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    max_buffered: int = DEFAULT_MAX_BUFFERED
    end_grace_s: float = DEFAULT_END_GRACE_S

    def __post_init__(self) -> None:
        for name in ("slack_s", "max_future_skew_s", "idle_timeout_s", "end_grace_s"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
        if not isinstance(self.max_buffered, int) or self.max_buffered < 1:
            raise ValueError(f"max_buffered: expected an integer >= 1, got {self.max_buffered!r}")


#: Rules that only align (no future, idle, end-grace or buffer bounds): the behaviour of a bare
#: ``EventTimeAligner(slack)``.
def alignment_only(slack_s: float) -> EventTimeRules:
    return EventTimeRules(slack_s=slack_s, max_future_skew_s=math.inf, idle_timeout_s=math.inf,
                          max_buffered=2**62, end_grace_s=0.0)


@dataclass(slots=True)
class Released(Generic[R]):
    """A record released by :meth:`EventTimeAligner.take_released` (one per record; not frozen, as
    :class:`~fraudstream.stream.types.RawEvent`, for the cost of a frozen dataclass's constructor).

    event_time : its event time (s), None when unreadable.
    timing : :data:`ON_TIME`, :data:`LATE`, :data:`TOO_EARLY` (send it to the dead-letter topic with ``reason``)
        or :data:`NO_TIME` (unreadable: the parser gives the reason).
    """

    record: R
    event_time: float | None
    timing: str
    reason: str | None = None


def iso_time(epoch_s: float) -> str:
    """ISO-8601 UTC text of an epoch time (s), or the number itself when it has no date."""
    try:
        return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return f"{epoch_s!r} s"

