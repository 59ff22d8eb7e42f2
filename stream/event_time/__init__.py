"""Event time of the transaction partitions: a watermark over what they may still deliver, with rules that
cannot be held hostage.

Why: a terminal's features count the transactions at that terminal in ``(t - d - w, t - d]`` (``d`` the label
delay, 7 days), from *every* partition (transactions are keyed by customer).  A partition that runs more than
``d`` ahead in event time of another scores transactions whose windows miss the other's older transactions.  A
partition that falls behind is limited too: terminal state is trimmed behind the terminal's newest transaction
with a margin of ``online.STATE_TRIM_SLACK_S`` (1 day), so a transaction more than that behind may find its
window already trimmed.  Both bounds hold when the partitions stay within a small event-time skew of each other.

The pieces, one module each:

* :mod:`.decode`: a transaction's wire JSON decoded once, with its event time (None when unreadable or outside the
  sane range: a dead letter that waits for nothing);
* :mod:`.rules`: the bounds (:class:`EventTimeRules`: release slack, future skew, idle time-out, end grace,
  buffer bound) and the verdict of each released record (:class:`Released`);
* :mod:`.aligner`: :class:`EventTimeAligner`, the per-worker buffer and watermark;
* :mod:`.progress`: what each worker publishes of its partitions for the others (:class:`PartitionProgress`,
  :func:`foreign_floor`).

Guarantee (each partition in event-time order, as a producer keyed by customer that sends in time order makes it;
every worker runs this rule): no transaction is scored more than ``slack`` after a transaction of any partition
that is still pending when its batch is released.  With ``slack`` below the label delay and the trim margin,
features equal the batch path.

Not guaranteed: a partition that receives records much older than what it already holds (a producer that is
itself days behind) does not hold the others back, since only what the broker holds is aligned; a partition
whose owner does not publish (an older worker) holds the others back until its progress
appears.
"""

from fraudstream.stream.event_time.aligner import EventTimeAligner
from fraudstream.stream.event_time.decode import EVENT_TIME_KEY, decode_event, decode_transaction, event_time_of
from fraudstream.stream.event_time.progress import PartitionProgress, foreign_floor
from fraudstream.stream.event_time.rules import (
    DEFAULT_END_GRACE_S,
    DEFAULT_EVENT_TIME_SLACK_S,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_BUFFERED,
    DEFAULT_MAX_FUTURE_SKEW_S,
    LATE,
    NO_TIME,
    ON_TIME,
    OUTLIER_WINDOW,
    TOO_EARLY,
    EventTimeRules,
    Released,
    alignment_only,
)

__all__ = [
    "DEFAULT_END_GRACE_S", "DEFAULT_EVENT_TIME_SLACK_S", "DEFAULT_IDLE_TIMEOUT_S", "DEFAULT_MAX_BUFFERED",
    "DEFAULT_MAX_FUTURE_SKEW_S",
    "EVENT_TIME_KEY", "LATE", "NO_TIME", "ON_TIME", "OUTLIER_WINDOW", "TOO_EARLY", "EventTimeAligner",
    "EventTimeRules", "PartitionProgress", "Released", "alignment_only", "decode_event", "decode_transaction",
    "event_time_of", "foreign_floor",
]
