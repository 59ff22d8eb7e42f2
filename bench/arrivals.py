"""When each transaction became readable from the broker: a bare consumer beside the worker, to split latency.

The latency table's event-to-decision figure holds the replay producer's linger, the broker's produce and fetch
path, and the worker.  :class:`ArrivalWatcher` reads the transactions topic with a bare aiokafka consumer (no
group; the worker's fetch settings and fetch-wait adaptation) in a thread of its own while a latency run goes on,
and notes the wall-clock time (ms since the epoch) each transaction id arrived.  Against the transaction's Kafka
timestamp that is what the replay and the broker take before any consumer could have it; the decision's Kafka
timestamp minus it is what the worker adds.  Both consumers compete for the same cores and adapt their fetch waits
each on its own, so the split is an estimate: where the watcher read a record later than the worker did, the
worker's part comes out small or negative and the broker's too large.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

import orjson

from fraudstream.detectors.units import MS_PER_S
from fraudstream.stream.broker.client_config import CONSUMER_FETCH_MAX_WAIT_MS, CONSUMER_MAX_PARTITION_FETCH_BYTES
from fraudstream.stream.broker.fetch_wait import FetchWait, adapt_fetch_wait

#: Longest wait (ms) of one ``getmany`` before the stop flag is looked at again.
POLL_TIMEOUT_MS = 100
#: Longest wait (s) for the watcher's consumer to be assigned its partitions at start.
START_TIMEOUT_S = 30.0


class ArrivalWatcher:
    """Reads ``topic``'s ``partitions`` from the start in a thread until :meth:`stop`; ``arrived_ms`` maps a
    transaction id to the wall-clock time (ms since the epoch) its record was returned by a fetch."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = 1) -> None:
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.arrived_ms: dict[int, float] = {}
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-arrivals", daemon=True)

    def start(self) -> ArrivalWatcher:
        self._thread.start()
        if not self._started.wait(START_TIMEOUT_S):
            raise RuntimeError(f"arrival watcher on {self.topic} did not start within {START_TIMEOUT_S:g} s")
        if self.error is not None:
            raise RuntimeError(f"arrival watcher on {self.topic} failed: {self.error!r}")
        return self

    def stop(self) -> dict[int, float]:
        """Stop reading; the arrivals so far.  A watcher that failed meanwhile says so on stderr (the split is
        then left out of the tables, the run itself stands)."""
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(START_TIMEOUT_S)
        if self.error is not None:
            print(f"arrival watcher on {self.topic} failed ({self.error!r}) after {len(self.arrived_ms):,} "
                  "transactions: the broker / worker split covers only those", file=sys.stderr)
        return self.arrived_ms

    def _run(self) -> None:
        try:
            asyncio.run(self._watch())
        except BaseException as exc:  # reported by start() or left for the caller to see in .error
            self.error = exc
        finally:
            self._started.set()

    async def _watch(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=CONSUMER_FETCH_MAX_WAIT_MS,
                                    max_partition_fetch_bytes=CONSUMER_MAX_PARTITION_FETCH_BYTES)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(self.topic, p) for p in range(self.partitions)])
            self._started.set()
            arrived = self.arrived_ms
            wait = FetchWait(CONSUMER_FETCH_MAX_WAIT_MS)
            while not self._stop.is_set():
                backlog_at = {tp: consumer.highwater(tp) for tp in consumer.assignment()}
                fetched = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
                now_ms = time.time() * MS_PER_S
                for records in fetched.values():
                    for record in records:
                        arrived[_transaction_id(record.value)] = now_ms
                await adapt_fetch_wait(consumer, wait, backlog_at, fetched)  # as the worker's consumer does
        finally:
            await consumer.stop()


def _transaction_id(value: Any) -> int:
    return int(orjson.loads(value)["transaction_id"])
