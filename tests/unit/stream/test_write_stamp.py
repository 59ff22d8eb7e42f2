"""Histories are stored behind a write stamp; a commit checks the stamp it read (real Redis), and histories stored
without one (written before stamps) are still read, checked by their SHA-1 and stamped when written again."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

from fraudstream.detectors.cascade.review_budget import DayCases
from fraudstream.stream.state.base import BatchChanges, BatchReads
from fraudstream.stream.state.redis_store import RedisStateStore
from fraudstream.stream.state.write_stamp import (
    STAMP_BYTES,
    STAMP_MAGIC,
    new_stamp,
    stamped,
    unstamped,
    value_of,
)

LABEL_TOPIC = "labels"
HISTORY_V1, HISTORY_V2, HISTORY_V3 = b"FSC1" + b"\x01" * 40, b"FSC1" + b"\x02" * 72, b"FSC1" + b"\x03" * 8


def test_a_stamp_is_the_magic_and_random_bytes_and_comes_off_again():
    first, second = new_stamp(), new_stamp()
    assert len(first) == STAMP_BYTES and first.startswith(STAMP_MAGIC) and first != second
    assert unstamped(stamped(HISTORY_V1, first)) == (HISTORY_V1, first)
    assert unstamped(HISTORY_V1) == (HISTORY_V1, None)  # stored before stamps
    assert value_of(stamped(HISTORY_V2, second)) == HISTORY_V2 and value_of(None) is None


def run_with_store(url: str, scenario):
    async def wrapped():
        store = RedisStateStore.from_url(url, f"w{uuid.uuid4().hex[:8]}", LABEL_TOPIC, 3600, 3600)
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(wrapped())


READS = BatchReads(transaction_ids=[], customer_ids=[5], terminal_ids=[9], label_partitions=[0])


def test_a_commit_goes_through_while_the_stamps_read_are_stored_and_is_refused_after_another_write(redis_server):
    async def scenario(store):
        first = await store.read_batch(READS)  # nothing stored yet
        stale = await store.read_batch(READS)  # the same, for a writer that does not see the first write
        assert first.customers == {} and first.terminals == {}
        assert await store.commit(first, BatchChanges(customers={5: HISTORY_V1}, terminals={9: HISTORY_V1}))
        raw = await store.redis.get(store.keys.customer(5))
        second = await store.read_batch(READS)
        third = await store.read_batch(READS)  # read the same state, written later by someone else
        assert await store.commit(second, BatchChanges(terminals={9: HISTORY_V2}))
        refused = await store.commit(third, BatchChanges(terminals={9: HISTORY_V3}))
        stale_absent = await store.commit(stale, BatchChanges(customers={5: HISTORY_V3}))
        fourth = await store.read_batch(READS)
        return raw, second, refused, stale_absent, fourth

    raw, second, refused, stale_absent, fourth = run_with_store(redis_server.url, scenario)
    value, stamp = unstamped(raw)
    assert value == HISTORY_V1 and stamp is not None  # stored stamped, handed to the core without it
    assert second.customers == {5: HISTORY_V1} and second.terminals == {9: HISTORY_V1}
    assert refused is False and stale_absent is False
    assert fourth.customers == {5: HISTORY_V1} and fourth.terminals == {9: HISTORY_V2}


def test_a_history_stored_without_a_stamp_is_read_checked_by_its_hash_and_stamped_when_written(redis_server):
    async def scenario(store):
        key = store.keys.terminal(9)
        await store.redis.set(key, HISTORY_V1)  # as written before stamps
        read = await store.read_batch(READS)
        stale = await store.read_batch(READS)
        written = await store.commit(read, BatchChanges(terminals={9: HISTORY_V2}))
        refused = await store.commit(stale, BatchChanges(terminals={9: HISTORY_V3}))
        await store.redis.set(key, HISTORY_V1)  # an old writer puts the legacy value back
        after_legacy = await store.read_batch(READS)
        stamped_read = await store.commit(after_legacy, BatchChanges(terminals={9: HISTORY_V3}))
        return read, written, refused, stamped_read, await store.redis.get(key)

    read, written, refused, stamped_read, final = run_with_store(redis_server.url, scenario)
    assert read.terminals == {9: HISTORY_V1}
    assert written is True and refused is False and stamped_read is True
    assert unstamped(final)[0] == HISTORY_V3 and unstamped(final)[1] is not None


def test_a_stamped_history_replaced_by_an_unstamped_one_refuses_the_commit(redis_server):
    async def scenario(store):
        base = await store.read_batch(READS)
        assert await store.commit(base, BatchChanges(terminals={9: HISTORY_V1}))
        read = await store.read_batch(READS)
        await store.redis.set(store.keys.terminal(9), HISTORY_V2)  # a writer that does not stamp
        return await store.commit(read, BatchChanges(terminals={9: HISTORY_V3}))

    assert run_with_store(redis_server.url, scenario) is False


def test_a_rebuilt_state_is_stored_stamped_with_its_review_case_logs(redis_server):
    log = [(-8, 1_600_000_100.0), (7, 1_600_000_000.0), (4, 1_600_000_050.0)]  # a verdict on card 7, two cases

    async def scenario(store):
        await store.write_rebuilt({5: HISTORY_V1}, {9: HISTORY_V2}, {0: 3}, [], review_cases={18_518: log})
        raws = await store.redis.mget([store.keys.customer(5), store.keys.terminal(9)])
        return raws, await store.read_batch(replace(READS, review_days=[18_518, 18_519]))

    raws, state = run_with_store(redis_server.url, scenario)
    assert all(unstamped(raw)[1] is not None for raw in raws)
    assert state.customers == {5: HISTORY_V1} and state.terminals == {9: HISTORY_V2} and state.label_offsets == {0: 3}
    assert state.review_cases == {18_518: DayCases.from_log(log), 18_519: DayCases()}
    assert state.review_cases[18_518].opened == 2 and not state.review_cases[18_518].is_open(7, 1_600_000_200.0)


def test_a_write_that_follows_on_the_same_state_is_checked_against_the_one_before(redis_server):
    async def scenario(store):
        state = await store.read_batch(READS)
        first = await store.commit(state, BatchChanges(terminals={9: HISTORY_V1}, label_offsets={0: 3}))
        follow_on = await store.commit(state, BatchChanges(terminals={9: HISTORY_V2}, label_offsets={0: 5}))
        other = await store.read_batch(READS)
        assert await store.commit(other, BatchChanges(terminals={9: HISTORY_V3}))
        after_another = await store.commit(state, BatchChanges(terminals={9: HISTORY_V1}))
        return first, follow_on, after_another, await store.read_batch(READS)

    first, follow_on, after_another, final = run_with_store(redis_server.url, scenario)
    assert first is True and follow_on is True  # the state describes the store after its own writes
    assert after_another is False  # but not after another writer's
    assert final.terminals == {9: HISTORY_V3} and final.label_offsets == {0: 5}
