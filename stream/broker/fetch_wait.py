"""How long the broker may hold a fetch: short while records flow, longer while a partition with backlog starves.

A short fetch wait (``fetch_max_wait_ms``) keeps latency low on brokers that hold a fetch for the whole wait
even when records arrive meanwhile (the embedded one does).  But some brokers (the embedded one again) also spend
that wait *finding* the records: once a topic holds a few hundred thousand records, a fetch at an offset deep in
it returns nothing within 2 ms, every time, and the partition starves for good although the broker has its
records (measured: at offset 116,079 of a 170,000-record topic, 0 records per 2 ms fetch, all 46,344 asked for
with 30 ms).  :class:`FetchWait` doubles the wait after a fetch that returned nothing for a partition the broker
reports backlog on, up to :data:`MAX_FETCH_WAIT_MS`, and shortens it by an eighth after each fetch that returned
records, back towards the short wait: slowly, so that it hovers just above what the broker needs (about one
empty fetch in six at a steady depth; halving made every second fetch an empty one).  :func:`apply_fetch_wait`
sets it on an aiokafka consumer; :func:`adapt_fetch_wait` does both after a fetch (the worker's transaction consumer
and the benchmark's arrival watcher).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger(__name__)

#: Longest fetch wait (ms) the adaptation goes up to.
MAX_FETCH_WAIT_MS = 500
#: After a fetch that returned records the wait is shortened by this fraction of itself (1 / divisor, >= 1 ms).
FED_STEP_DIVISOR = 8


class FetchWait:
    """The current fetch wait (ms) between ``base_ms`` and ``max_ms``.

    :meth:`starved` (doubles it) after a fetch returned nothing although the broker reported records past the
    position; :meth:`fed` (an eighth shorter, at least 1 ms) after a fetch returned records.  Each returns the new
    wait.
    """

    def __init__(self, base_ms: int, max_ms: int = MAX_FETCH_WAIT_MS) -> None:
        if not 0 < base_ms <= max_ms:
            raise ValueError(f"fetch wait: need 0 < base_ms <= max_ms, got {base_ms} and {max_ms}")
        self.base_ms = base_ms
        self.max_ms = max_ms
        self.ms = base_ms

    def starved(self) -> int:
        self.ms = min(self.max_ms, self.ms * 2)
        return self.ms

    def fed(self) -> int:
        self.ms = max(self.base_ms, self.ms - max(1, self.ms // FED_STEP_DIVISOR))
        return self.ms


def apply_fetch_wait(consumer: AIOKafkaConsumer, wait_ms: int) -> bool:
    """Set the fetch wait of a started aiokafka consumer for its next fetch requests.

    aiokafka reads the wait from its fetcher each time it builds a fetch request but has no public setter; returns
    False (and changes nothing) on a version whose fetcher does not hold it that way.
    """
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None or not isinstance(getattr(fetcher, "_fetch_max_wait_ms", None), int):
        return False
    if fetcher._fetch_max_wait_ms != wait_ms:
        log.debug("fetch wait of %s now %d ms", getattr(consumer, "_client", None), wait_ms)
        fetcher._fetch_max_wait_ms = wait_ms
    return True


async def adapt_fetch_wait(consumer: AIOKafkaConsumer, wait: FetchWait, backlog_at: Mapping[TopicPartition, int | None],
                           fetched: Mapping[TopicPartition, Sequence[Any]]) -> None:
    """After a fetch: a longer wait while an asked partition got nothing although it had backlog before the fetch
    (its highwater then, ``backlog_at``, past its position; records that arrived during the fetch do not count),
    a shorter one once records come; unchanged otherwise."""
    if any(fetched.get(tp) for tp in backlog_at):
        apply_fetch_wait(consumer, wait.fed())
        return
    for tp, highwater in backlog_at.items():
        if highwater is not None and await consumer.position(tp) < highwater:
            apply_fetch_wait(consumer, wait.starved())
            return
