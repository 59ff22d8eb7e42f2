"""Health of the worker's dependencies, measured on its own timer: Redis and broker reachability, consumer lag.

Why a timer of its own: a batch blocked on a frozen Redis updates nothing, so gauges set only after a batch read
"all is well" (lag 0) exactly when it is not.  :class:`HealthMonitor` runs beside the batch loop every
``health_interval_s``:

* ``fraudstream_redis_up``: 1 when a PING answered within ``health_timeout_s``, else 0;
* ``fraudstream_broker_up``: 1 when the broker answered the end-offsets (or metadata) request within the time-out;
* ``fraudstream_consumer_lag_messages``: per assigned transaction partition, the end offset asked now minus the
  committed offset (and the label feed's lag), so the lag grows while batches are stuck.

It never raises: a failed probe sets its gauge to 0 and is logged once when it goes down and once when it comes
back; an unexpected error is logged once per kind and the loop goes on.  ``fraudstream_last_batch_timestamp_seconds``
is set by the runtime when a batch is delivered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiokafka import TopicPartition
from prometheus_client import Gauge

log = logging.getLogger(__name__)

#: Default pause (s) between two health checks, and longest wait (s) for one probe's answer.
DEFAULT_HEALTH_INTERVAL_S = 2.0
DEFAULT_HEALTH_TIMEOUT_S = 2.0

#: A probe of one dependency: returns normally when it answered (the lag probe returns the lag per partition).
Probe = Callable[[], Awaitable[object]]
LagProbe = Callable[[], Awaitable[Mapping[TopicPartition, int]]]
#: Sets the lag gauge from a probe's answer (the owner of the assignment keeps out partitions revoked meanwhile).
LagPublisher = Callable[[Mapping[TopicPartition, int]], None]


class HealthMonitor:
    """Probes the state store and the broker every ``interval_s`` and sets the health gauges.

    Parameters
    ----------
    redis_up, broker_up : the gauges (1 up, 0 down).
    publish_lag : sets the consumer lag gauge (labels ``topic``, ``partition``) from the lag probe's answer.
    ping_redis : probe of the state store (e.g. ``store.ping``).
    broker_lag : probe of the broker that returns the lag per partition (None: not started yet, which counts as
        down before the first probe; after it, a round without a probe, e.g. while the consumer is replaced, keeps
        the gauges as they are).
    interval_s, timeout_s : pause between checks and longest wait of one probe (s).
    """

    def __init__(self, redis_up: Gauge, broker_up: Gauge, publish_lag: LagPublisher,
                 ping_redis: Callable[[], Probe | None], broker_lag: Callable[[], LagProbe | None],
                 interval_s: float = DEFAULT_HEALTH_INTERVAL_S,
                 timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S) -> None:
        self.redis_up = redis_up
        self.broker_up = broker_up
        self.publish_lag = publish_lag
        self.ping_redis = ping_redis
        self.broker_lag = broker_lag
        self.interval_s = float(interval_s)
        self.timeout_s = float(timeout_s)
        self._up: dict[str, bool] = {}
        self._errors_logged: set[str] = set()

    async def run(self, should_stop: Callable[[], bool]) -> None:
        """Check, sleep, repeat until ``should_stop()``; never raises (cancellation aside)."""
        while not should_stop():
            await self.check_once()
            await asyncio.sleep(self.interval_s)

    async def check_once(self) -> None:
        """One round of probes; sets the gauges, logs changes, never raises."""
        try:
            await self._check_redis()
            await self._check_broker()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a health check must never take the worker down
            kind = type(exc).__name__
            if kind not in self._errors_logged:
                self._errors_logged.add(kind)
                log.warning("health check failed unexpectedly (%r); going on, logged once", exc)

    async def _check_redis(self) -> None:
        probe = self.ping_redis()
        if probe is None and "redis" in self._up:  # between two clients (e.g. a consumer restart): no news
            return
        up = False
        error: BaseException | None = None
        if probe is not None:
            try:
                await asyncio.wait_for(probe(), self.timeout_s)
                up = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a timeout, a refused connection: down
                error = exc
        self._set("redis", self.redis_up, up, error)

    async def _check_broker(self) -> None:
        probe = self.broker_lag()
        if probe is None and "broker" in self._up:  # between two clients (e.g. a consumer restart): no news
            return
        up = False
        error: BaseException | None = None
        lags: Mapping[TopicPartition, int] = {}
        if probe is not None:
            try:
                lags = await asyncio.wait_for(probe(), self.timeout_s)
                up = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = exc
        self._set("broker", self.broker_up, up, error)
        if lags:
            self.publish_lag(lags)

    def _set(self, name: str, gauge: Gauge, up: bool, error: BaseException | None) -> None:
        gauge.set(1 if up else 0)
        before = self._up.get(name)
        self._up[name] = up
        if before is None and up:
            return
        if before is not False and not up:
            reason = "not started yet" if error is None else (repr(error) if str(error) else type(error).__name__)
            log.warning("health: %s unreachable (%s); fraudstream_%s_up = 0", name, reason, name)
        elif before is False and up:
            log.info("health: %s reachable again", name)
