"""Event-time progress across workers: what each publishes of its partitions, and the floor others derive.

Across workers (each sees only its own partitions), every worker publishes per partition a
:class:`PartitionProgress` (next offset to process, its event time when buffered, latest event time processed) in
the shared store after each batch's state is written, and reads the others' progress with the broker's end offsets
(asked first): a foreign partition with records beyond its published offset counts with its published head, else
its latest processed event time (a lower bound), else ``-inf`` (:func:`foreign_floor`).  Stale views are lower
bounds, so they only delay; the owners keep publishing, so the workers do not wait on each other forever.  A
partition whose owner does not publish (an older worker) holds the others back until its progress appears.

Where the progress is kept: ``stream.state.keys`` (``<p>:progress:<topic>:<partition>``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass


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
