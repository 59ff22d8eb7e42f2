"""Compare-and-write of a batch against a real Redis, and how a batch's labels are filtered by applied offsets."""

import asyncio
import json

import pytest

from fraudstream.detectors.schema import LabelEvent
from fraudstream.stream.core.parse import parse_events
from fraudstream.stream.core.plan import plan_batch
from fraudstream.stream.state.compare_and_write import ABSENT_DIGEST, BatchCommit, BatchWrite, digest
from fraudstream.stream.types import RawEvent

TX_TOPIC, LABEL_TOPIC = "tx", "labels"


@pytest.fixture(scope="module")
def redis_url():
    from fraudstream.stream.embedded import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server.url


def test_write_happens_only_while_checked_keys_hold_what_was_read(redis_url):
    import redis.asyncio as aioredis

    async def scenario():
        client = aioredis.from_url(redis_url)
        commit = BatchCommit(client)
        await client.set("shared", b"v1")
        first = BatchWrite()
        first.check("shared", b"v1")
        first.check("fresh", None)
        first.set("shared", b"v2", 60)
        first.set("fresh", b"new", 60)
        first.hashes.append(("item", {"status": "pending", "risk": "0.5"}))
        first.zset_key, first.members = "pending", [(0.5, "7")]
        written = await commit(first)
        stale = BatchWrite()
        stale.check("shared", b"v1")  # what an earlier read saw; the value is v2 now
        stale.set("shared", b"lost", 60)
        not_written = await commit(stale)
        values = await client.mget(["shared", "fresh"])
        ttl = await client.ttl("shared")
        item = await client.hgetall("item")
        members = await client.zrange("pending", 0, -1, withscores=True)
        await client.aclose()
        return written, not_written, values, ttl, item, members

    written, not_written, values, ttl, item, members = asyncio.run(scenario())
    assert written is True and not_written is False
    assert values == [b"v2", b"new"]
    assert 0 < ttl <= 60
    assert item == {b"status": b"pending", b"risk": b"0.5"}
    assert members == [(b"7", 0.5)]
    assert digest(None) == ABSENT_DIGEST and digest(b"v1") != digest(b"v2")


def test_each_key_keeps_its_own_expiry_when_expiries_interleave(redis_url):
    import redis.asyncio as aioredis

    sets = [("h1", b"a", 1000), ("h2", b"b", 1000), ("d1", b"c", 50), ("h3", b"d", 1000), ("d2", b"e", 50)]

    async def scenario():
        client = aioredis.from_url(redis_url)
        write = BatchWrite()
        write.check("h1", None)
        for key, value, ttl in sets:
            write.set(key, value, ttl)
        write.hashes.append(("case", {"status": "pending"}))
        written = await BatchCommit(client)(write)
        values = await client.mget([key for key, _, _ in sets])
        ttls = [await client.ttl(key) for key, _, _ in sets]
        case = await client.hgetall("case")
        await client.aclose()
        return written, values, ttls, case

    written, values, ttls, case = asyncio.run(scenario())
    assert written is True
    assert values == [value for _, value, _ in sets]
    assert [ttl > 900 for ttl in ttls] == [True, True, False, True, False]
    assert all(0 < ttl <= wanted for ttl, (_, _, wanted) in zip(ttls, sets))
    assert case == {b"status": b"pending"}


def label_event(partition, offset, tx_id, fraud=True):
    label = LabelEvent(tx_id, 3, 4, 1_600_000_000.0 + tx_id, fraud, 1_600_700_000.0 + tx_id)
    return RawEvent(LABEL_TOPIC, partition, offset, 0, label.to_json())


def test_labels_below_the_applied_offset_are_skipped_and_offsets_only_advance():
    events = [label_event(0, 4, 40), label_event(0, 5, 50), label_event(1, 2, 12), label_event(1, 3, 13),
              RawEvent(LABEL_TOPIC, 1, 4, 0, b"{broken"), RawEvent(LABEL_TOPIC, 0, 3, 0, b"{old broken")]
    parsed = parse_events(events, TX_TOPIC, LABEL_TOPIC)
    plan = plan_batch(parsed, stored={}, applied_before={0: 5, 1: 0})
    assert [lab.transaction_id for lab in plan.new_labels] == [50, 12, 13]
    assert plan.applied == {0: 6, 1: 5}
    letters = [json.loads(parsed.dlq[j][1]) for j in plan.dlq_index]
    assert [(d["partition"], d["offset"]) for d in letters] == [(1, 4)]  # the one at 0/3 was handled before

    again = plan_batch(parsed, stored={}, applied_before={0: 6, 1: 5})
    assert again.new_labels == [] and again.applied == {} and again.dlq_index == []
