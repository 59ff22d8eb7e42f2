"""The live block list turns the rows of blocked cards into BLOCK by rule and leaves every other row alone."""

import numpy as np

from fraudstream.detectors.cascade.types import CascadeResult, Decision, Stage
from fraudstream.detectors.schema import TransactionBatch
from fraudstream.stream.core.block_list import REASON_LIVE_BLOCK_LIST, apply_block_list


def result_and_batch():
    batch = TransactionBatch(np.array([1, 2, 3]), np.array([10.0, 11.0, 12.0]), np.array([7, 8, 7]),
                             np.array([1, 1, 1]), np.array([5.0, 6.0, 7.0]))
    result = CascadeResult(decision=np.array([Decision.ALLOW, Decision.REVIEW, Decision.REVIEW], dtype=np.int8),
                           stage=np.array([Stage.LIGHT, Stage.HEAVY, Stage.HEAVY], dtype=np.int8),
                           risk=np.array([0.1, 0.6, 0.7]), light_score=np.array([0.1, 0.5, 0.6]),
                           anomaly_score=np.array([0.2, 0.3, 0.4]), heavy_score=np.array([np.nan, 0.6, 0.7]),
                           reasons=[("a",), ("b",), ()], model_version="m")
    return result, batch


def test_rows_of_blocked_cards_are_blocked_by_rule_with_their_scores_kept():
    result, batch = result_and_batch()
    out = apply_block_list(result, batch, {7})
    assert out.decision.tolist() == [Decision.BLOCK, Decision.REVIEW, Decision.BLOCK]
    assert out.stage.tolist() == [Stage.RULES, Stage.HEAVY, Stage.RULES]
    assert out.reasons == [(REASON_LIVE_BLOCK_LIST, "a"), ("b",), (REASON_LIVE_BLOCK_LIST,)]
    assert out.risk.tolist() == result.risk.tolist()
    assert result.decision.tolist() == [Decision.ALLOW, Decision.REVIEW, Decision.REVIEW]  # input untouched


def test_no_blocked_card_in_the_batch_changes_nothing():
    result, batch = result_and_batch()
    assert apply_block_list(result, batch, set()) is result
    assert apply_block_list(result, batch, {99}) is result


def test_the_redis_store_reads_the_batch_cards_block_list_and_chargebacks_settle_pending_items():
    import asyncio
    import uuid

    from fraudstream.stream.embedded import EmbeddedRedis
    from fraudstream.stream.state.base import BatchChanges, BatchReads
    from fraudstream.stream.state.redis_store import RedisStateStore
    from fraudstream.stream.types import DecisionRecord

    def item(tid, card):
        return DecisionRecord(tid, card, 3, 10.0, "REVIEW", "HEAVY", 0.7, 0.5, 0.6, 0.7, ("x",), "m", 1.0, 2.0, 1.0)

    async def scenario(url):
        store = RedisStateStore.from_url(url, f"b{uuid.uuid4().hex[:8]}", "labels", 3600, 3600)
        try:
            await store.redis.set(store.keys.block(7), b'{"since": 1}')
            state = await store.read_batch(BatchReads([1, 2], [7, 8], [3], []))
            blocked = state.blocked_customers
            assert await store.commit(state, BatchChanges(review_items=[item(1, 8), item(2, 8)]))
            state = await store.read_batch(BatchReads([], [], [], []))
            assert await store.commit(state, BatchChanges(settled_reviews=[(1, True), (99, False)]))
            settled = await store.review_item(1)
            return blocked, settled, await store.pending_reviews(10)
        finally:
            await store.close()

    with EmbeddedRedis() as server:
        blocked, settled, pending = asyncio.run(scenario(server.url))
    assert blocked == frozenset({7})
    assert (settled["status"], settled["verdict"], settled["source"]) == ("resolved", "fraud", "chargeback")
    assert [tid for tid, _ in pending] == [2]
