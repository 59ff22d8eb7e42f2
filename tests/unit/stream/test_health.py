"""The health monitor: gauges follow the probes, lag comes from its own timer, nothing raises, logs once."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import TopicPartition

from fraudstream.stream.health import HealthMonitor
from fraudstream.stream.metrics import WorkerMetrics


class Dependency:
    """A probe target that answers, hangs or fails as told."""

    def __init__(self) -> None:
        self.mode = "up"
        self.lag = {TopicPartition("tx", 0): 5}

    async def ping(self) -> bool:
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "fail":
            raise ConnectionError("connection refused")
        return True

    async def lags(self) -> dict[TopicPartition, int]:
        await self.ping()
        return dict(self.lag)


def lag_publisher(metrics: WorkerMetrics):
    """What the worker gives the monitor: sets the lag gauge from a probe's answer."""
    def publish(lags) -> None:
        for tp, value in lags.items():
            metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(value)
    return publish


def gauge(metrics: WorkerMetrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


def test_gauges_follow_the_probes_and_changes_are_logged_once(caplog):
    metrics = WorkerMetrics()
    redis, broker = Dependency(), Dependency()
    monitor = HealthMonitor(metrics.redis_up, metrics.broker_up, lag_publisher(metrics), lambda: redis.ping,
                            lambda: broker.lags, interval_s=0.01, timeout_s=0.05)
    lag_labels = {"topic": "tx", "partition": "0"}

    async def scenario():
        await monitor.check_once()
        assert gauge(metrics, "fraudstream_redis_up") == 1 and gauge(metrics, "fraudstream_broker_up") == 1
        assert gauge(metrics, "fraudstream_consumer_lag_messages", lag_labels) == 5
        redis.mode = "hang"  # a frozen Redis: the probe times out
        broker.lag = {TopicPartition("tx", 0): 9}
        for _ in range(3):
            await monitor.check_once()
        assert gauge(metrics, "fraudstream_redis_up") == 0
        assert gauge(metrics, "fraudstream_consumer_lag_messages", lag_labels) == 9  # measured without a batch
        broker.mode = "fail"
        await monitor.check_once()
        assert gauge(metrics, "fraudstream_broker_up") == 0
        redis.mode = broker.mode = "up"
        await monitor.check_once()
        assert gauge(metrics, "fraudstream_redis_up") == 1 and gauge(metrics, "fraudstream_broker_up") == 1

    with caplog.at_level(logging.INFO, logger="fraudstream.stream.health"):
        asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert sum("redis unreachable" in m for m in messages) == 1, messages
    assert sum("broker unreachable" in m and "connection refused" in m for m in messages) == 1, messages
    assert sum("reachable again" in m for m in messages) == 2, messages


def test_a_probe_that_is_not_there_or_a_broken_gauge_never_raises(caplog):
    metrics = WorkerMetrics()

    class BrokenGauge:
        def set(self, value: float) -> None:
            raise RuntimeError("registry gone")

    monitor = HealthMonitor(BrokenGauge(), metrics.broker_up, lag_publisher(metrics),  # type: ignore[arg-type]
                            lambda: None, lambda: None, interval_s=0.01, timeout_s=0.05)
    stops = iter([False, False, False, True])

    async def scenario():
        await monitor.run(lambda: next(stops))

    with caplog.at_level(logging.WARNING, logger="fraudstream.stream.health"):
        asyncio.run(scenario())
    unexpected = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    assert len(unexpected) == 1, "an unexpected error is logged once, not every round"


def test_a_round_without_a_probe_after_the_first_keeps_the_gauges(caplog):
    """While the worker replaces its consumer there is no broker probe for a moment: that is no news, not an
    unreachable broker (before the first probe it is: nothing is known to be up)."""
    metrics = WorkerMetrics()
    broker = Dependency()
    probes: list = [None, broker.lags, None]
    monitor = HealthMonitor(metrics.redis_up, metrics.broker_up, lag_publisher(metrics), lambda: None,
                            lambda: probes.pop(0), interval_s=0.01, timeout_s=0.05)

    async def scenario() -> list[float | None]:
        seen = []
        for _ in range(3):
            await monitor.check_once()
            seen.append(gauge(metrics, "fraudstream_broker_up"))
        return seen

    with caplog.at_level(logging.INFO, logger="fraudstream.stream.health"):
        assert asyncio.run(scenario()) == [0, 1, 1]
    messages = [r.getMessage() for r in caplog.records if "broker" in r.getMessage()]
    assert messages == ["health: broker unreachable (not started yet); fraudstream_broker_up = 0",
                        "health: broker reachable again"], messages
