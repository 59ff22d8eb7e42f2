"""The worker's lag gauge lists the transaction partitions it holds, never one revoked while a lag was asked."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from fraudstream.stream.batch_loop import BatchConsumer
from fraudstream.stream.runtime import WorkerRuntime
from fraudstream.stream.settings import StreamSettings


def lag_series(runtime: WorkerRuntime) -> dict[tuple[str, str], float]:
    out = {}
    for metric in runtime.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "fraudstream_consumer_lag_messages":
                out[(sample.labels["topic"], sample.labels["partition"])] = sample.value
    return out


def test_a_lag_asked_before_a_revocation_does_not_bring_the_revoked_partition_back():
    settings = StreamSettings(transactions_topic="tx", labels_topic="labels")
    tx0, tx1, labels0 = TopicPartition("tx", 0), TopicPartition("tx", 1), TopicPartition("labels", 0)

    async def scenario() -> tuple[dict, dict, dict]:
        runtime = WorkerRuntime(settings)
        batches = BatchConsumer(runtime)
        await batches.on_assigned([tx0, tx1])
        batches._publish_lag({tx0: 3, tx1: 4, labels0: 2})
        before = lag_series(runtime)
        asked_before_revocation = {tx0: 5, tx1: 6, labels0: 1}
        await batches.on_revoked([tx0, tx1])  # the group takes both back, hands out only tx0 later
        batches._publish_lag(asked_before_revocation)
        between = lag_series(runtime)
        await batches.on_assigned([tx0])
        batches._publish_lag({tx0: 7, tx1: 8})
        return before, between, lag_series(runtime)

    before, between, after = asyncio.run(scenario())
    assert before == {("tx", "0"): 3, ("tx", "1"): 4, ("labels", "0"): 2}
    assert between == {("labels", "0"): 1}  # the label feed is every worker's; no transaction partition is held
    assert after == {("tx", "0"): 7, ("labels", "0"): 1}
