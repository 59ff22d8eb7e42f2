"""The state epoch: a Redis emptied under a running worker refuses the next batch's write (StateLostError), and
nothing of that batch is stored; a batch on intact state commits as before."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from fraudstream.detectors.schema import Transaction
from fraudstream.stream.core.batch import BatchPipeline
from fraudstream.stream.model_watch import ActiveModel
from fraudstream.stream.state.epoch import StateEpoch, StateLostError, create_epoch, read_epoch
from fraudstream.stream.state.redis_store import RedisStateStore
from fraudstream.stream.types import RawEvent

TX_TOPIC, LABEL_TOPIC = "tx", "labels"


def tx_event(transaction_id: int, offset: int) -> RawEvent:
    tx = Transaction(transaction_id, 1_522_600_000.0 + offset, 1 + offset % 3, 5, 12.5)
    return RawEvent(TX_TOPIC, 0, offset, 1_700_000_000_000, tx.to_json(), b"1")


def test_epoch_round_trip_and_the_first_writer_wins():
    epoch = StateEpoch.new(3, 3)
    assert StateEpoch.decode(epoch.encode()) == epoch
    assert StateEpoch.decode(b"not json") is None and StateEpoch.decode(None) is None


def test_a_flushed_redis_refuses_the_next_batch_and_stores_nothing(tiny_bundle, redis_server):
    model = ActiveModel.load(tiny_bundle.root)
    store = RedisStateStore.from_url(redis_server.url, f"e{uuid.uuid4().hex[:8]}", LABEL_TOPIC, 3600, 3600)
    pipeline = BatchPipeline(store, lambda: model, TX_TOPIC, LABEL_TOPIC)

    async def scenario():
        try:
            first = await create_epoch(store.redis, store.keys, StateEpoch.new(1, 1))
            second = await create_epoch(store.redis, store.keys, StateEpoch.new(9, 9))
            assert first == second, "a second writer must not replace the epoch"
            store.epoch = await read_epoch(store.redis, store.keys)
            out = await pipeline.process([tx_event(1, 0), tx_event(2, 1)])
            assert len(out.new_decisions) == 2
            await store.check_epoch()  # intact: no error
            await store.redis.flushall()  # Redis came back empty
            with pytest.raises(StateLostError, match="accept-empty"):
                await pipeline.process([tx_event(3, 2)])
            with pytest.raises(StateLostError):
                await store.check_epoch()
            return await store.redis.dbsize()
        finally:
            await store.close()

    assert asyncio.run(scenario()) == 0, "the refused batch wrote something"
