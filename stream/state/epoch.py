"""The state epoch: a marker in Redis written once when a deployment's state is created.

Why: a Redis that restarts without its data (no persistence, a lost volume, ``FLUSHALL``) looks to the worker
like a quiet one: features start empty, duplicates are no longer recognised, the review queue is gone, and
decisions change without a word.  With the marker (key ``<p>:state-epoch``, see
:mod:`fraudstream.stream.state.keys`):

* at start, a missing marker while the consumer group has committed offsets means Redis lost the state: the
  worker stops (exit code 4) and says how to recover (``fraudstream state rebuild`` or ``accept-empty``);
* while running, every batch's compare-and-write checks the marker is still the value read at start; when it is
  not, nothing is written and the worker stops the same way (:class:`StateLostError`).

A deployment whose state predates the marker (stored decisions, no marker) adopts a new marker at start.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass
from typing import cast

from redis.asyncio import Redis

from fraudstream.stream.state.keys import Keyspace

#: Process exit code of a worker that found its state lost.
EXIT_STATE_LOST = 4
#: How to recover, quoted in every state-lost message.
RECOVERY_HINT = ("restore Redis from its backup (AOF/RDB) and start again; or, with the workers stopped, rebuild "
                 "the state from Kafka with `fraudstream state rebuild` (histories, label offsets and stored "
                 "decisions; review items are gone); or accept starting from empty state with "
                 "`fraudstream state accept-empty` (features rebuild from new traffic, stored decisions and review "
                 "items are gone)")


class StateLostError(RuntimeError):
    """Redis no longer holds the state epoch the worker started with: it came back empty or was flushed."""


@dataclass(frozen=True)
class StateEpoch:
    """One deployment's state: when it was created and the partition counts of its input topics then.

    epoch_id : random hex id.
    created_at : wall time (epoch s).
    transactions_partitions, labels_partitions : partitions of the two input topics (0: unknown).
    """

    epoch_id: str
    created_at: float
    transactions_partitions: int = 0
    labels_partitions: int = 0

    @classmethod
    def new(cls, transactions_partitions: int, labels_partitions: int) -> StateEpoch:
        return cls(uuid.uuid4().hex, time.time(), transactions_partitions, labels_partitions)

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> StateEpoch | None:
        """Inverse of :meth:`encode`; None for a missing or unreadable value."""
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return cls(str(data["epoch_id"]), float(data["created_at"]), int(data.get("transactions_partitions", 0)),
                       int(data.get("labels_partitions", 0)))
        except (ValueError, TypeError, KeyError):
            return None


async def read_epoch(redis: Redis, keys: Keyspace) -> bytes | None:
    """The marker's stored bytes (None: no marker)."""
    return cast(bytes | None, await redis.get(keys.state_epoch))


async def create_epoch(redis: Redis, keys: Keyspace, epoch: StateEpoch) -> bytes:
    """Write the marker unless one exists (another worker may have won the race); returns the stored bytes."""
    await redis.set(keys.state_epoch, epoch.encode(), nx=True)
    stored = await read_epoch(redis, keys)
    if stored is None:  # deleted between the two calls: Redis is being emptied under us
        raise StateLostError(f"the state epoch {keys.state_epoch} vanished right after it was written")
    return stored


async def has_stored_decisions(redis: Redis, keys: Keyspace) -> bool:
    """Whether Redis holds any stored decision of this prefix (state from before the marker existed)."""
    async for _ in redis.scan_iter(match=keys.decision_pattern(), count=1000):
        return True
    return False


def lost_message(keys: Keyspace, why: str) -> str:
    """The one-line explanation of a lost state, with the recovery."""
    return f"state lost: {why} (no {keys.state_epoch} in Redis); stopping. To recover: {RECOVERY_HINT}"
