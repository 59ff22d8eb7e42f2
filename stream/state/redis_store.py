"""The state store on Redis: one MGET to read a batch, one atomic script call to write it.

Every key it touches is named by :class:`~fraudstream.stream.state.keys.Keyspace` (the module documents the whole
keyspace).  Shared keys (terminals, label offsets) and customers are checked at commit against what the batch
read (:mod:`~fraudstream.stream.state.compare_and_write`), so concurrent workers never lose each other's updates.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import cast

import numpy as np
from redis.asyncio import Redis
from redis.exceptions import RedisError

from fraudstream.detectors.cascade.review_budget import DayCases
from fraudstream.detectors.units import MS_PER_S
from fraudstream.stream.state import review_scripts
from fraudstream.stream.state.base import BatchChanges, BatchReads, BatchState, StateStoreError
from fraudstream.stream.state.compare_and_write import ABSENT_DIGEST, BatchCommit, BatchWrite, digest
from fraudstream.stream.state.epoch import StateLostError, lost_message, read_epoch
from fraudstream.stream.state.keys import REVIEW_CASES_TTL_S, Keyspace
from fraudstream.stream.state.write_stamp import new_stamp, stamped, unstamped
from fraudstream.stream.types import review_item_fields

#: Keys per pipelined round trip when a rebuilt state is written.
REBUILT_WRITE_CHUNK = 1000


def decode_offset(raw: bytes | None) -> int:
    """Stored applied label offset (0 when absent: nothing applied yet)."""
    return 0 if raw is None else int(raw)


#: A stored review-case log entry: code (little-endian int64), time (little-endian float64, epoch s).
CASE_LOG_DTYPE = np.dtype([("code", "<i8"), ("t", "<f8")])


def encode_case_log(entries: Sequence[tuple[int, float]]) -> bytes:
    """Review-case log entries as a day's key stores them (:data:`CASE_LOG_DTYPE`)."""
    return np.array(entries, dtype=CASE_LOG_DTYPE).tobytes()


def decode_case_log(raw: bytes | None) -> DayCases:
    """A day's review cases from its stored log (none when absent)."""
    return DayCases() if raw is None else DayCases.from_log(np.frombuffer(raw, dtype=CASE_LOG_DTYPE).tolist())


def _histories(ids: Sequence[int], keys: Sequence[str], raws: Sequence[bytes | None], expected: dict[str, str | bytes]
               ) -> dict[int, bytes]:
    """Stored histories without their write stamps (absent ones left out); what a commit expects of each key (its
    stamp, the SHA-1 of a value stored without one, absent) goes into ``expected``."""
    out: dict[int, bytes] = {}
    for entity, key, raw in zip(ids, keys, raws):
        if raw is None:
            expected[key] = ABSENT_DIGEST
            continue
        value, stamp = unstamped(raw)
        expected[key] = stamp if stamp is not None else digest(raw)
        out[entity] = value
    return out


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisStateStore:
    """:class:`~fraudstream.stream.state.base.StateStore` on one ``redis.asyncio`` client.

    Parameters
    ----------
    redis : client with ``decode_responses=False``.
    keys : the keyspace (its prefix).
    labels_topic : topic whose applied label offsets are kept.
    state_ttl_s : expiry of histories and label offsets, refreshed on every write (s).
    decision_ttl_s : how long a decision is kept, i.e. how late a duplicate is still recognised (s).
    """

    def __init__(self, redis: Redis, keys: Keyspace, labels_topic: str, state_ttl_s: int,
                 decision_ttl_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.labels_topic = labels_topic
        self.state_ttl_s = int(state_ttl_s)
        self.decision_ttl_s = int(decision_ttl_s)
        self._commit = BatchCommit(redis)
        #: the state epoch marker read at start (None: not checked, e.g. tests); every commit checks it.
        self.epoch: bytes | None = None
        self._settle = redis.register_script(review_scripts.CHARGEBACK)

    @classmethod
    def from_url(cls, url: str, prefix: str, labels_topic: str, state_ttl_s: int,
                 decision_ttl_s: int) -> RedisStateStore:
        """A store on a new client for ``redis://...`` (call :meth:`close` when done)."""
        from fraudstream.stream.state.redis_client import redis_from_url

        client = redis_from_url(url, decode_responses=False)
        return cls(client, Keyspace(prefix), labels_topic, state_ttl_s, decision_ttl_s)

    async def ping(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()

    # ---- one batch ---------------------------------------------------------------------------------------------
    async def read_batch(self, reads: BatchReads) -> BatchState:
        k = self.keys
        customer_keys = [k.customer(c) for c in reads.customer_ids]
        terminal_keys = [k.terminal(t) for t in reads.terminal_ids]
        offset_keys = [k.labels_applied(self.labels_topic, p) for p in reads.label_partitions]
        block_keys = [k.block(c) for c in reads.cards]
        keys = [k.decision(t) for t in reads.transaction_ids] + customer_keys + terminal_keys + offset_keys
        keys += block_keys
        keys += [k.review_cases_day(day) for day in reads.review_days]
        raws = cast(list[bytes | None], await self.redis.mget(keys)) if keys else []
        n_tx, n_cust, n_term = len(reads.transaction_ids), len(reads.customer_ids), len(reads.terminal_ids)
        n_off, n_block = len(reads.label_partitions), len(block_keys)
        customer_raws = raws[n_tx:n_tx + n_cust]
        terminal_raws = raws[n_tx + n_cust:n_tx + n_cust + n_term]
        offset_raws = raws[n_tx + n_cust + n_term:n_tx + n_cust + n_term + n_off]
        block_raws = raws[n_tx + n_cust + n_term + n_off:n_tx + n_cust + n_term + n_off + n_block]
        case_raws = raws[n_tx + n_cust + n_term + n_off + n_block:]
        expected: dict[str, str | bytes] = {key: digest(raw) for key, raw in zip(offset_keys, offset_raws)}
        customers = _histories(reads.customer_ids, customer_keys, customer_raws, expected)
        terminals = _histories(reads.terminal_ids, terminal_keys, terminal_raws, expected)
        return BatchState(
            reads=reads,
            decisions={t: raw for t, raw in zip(reads.transaction_ids, raws[:n_tx]) if raw is not None},
            customers=customers,
            terminals=terminals,
            label_offsets={p: decode_offset(raw) for p, raw in zip(reads.label_partitions, offset_raws)},
            snapshot=expected,
            blocked_customers=frozenset(c for c, raw in zip(reads.cards, block_raws) if raw is not None),
            review_cases={day: decode_case_log(raw) for day, raw in zip(reads.review_days, case_raws)},
        )

    async def commit(self, state: BatchState, changes: BatchChanges) -> bool:
        return await (await self.start_commit(state, changes))

    async def start_commit(self, state: BatchState, changes: BatchChanges) -> Awaitable[bool]:
        k, ttl = self.keys, self.state_ttl_s
        snapshot = state.snapshot
        assert isinstance(snapshot, dict), "state was not read by a RedisStateStore"
        write = BatchWrite()
        customer_keys = {c: k.customer(c) for c in changes.customers}
        terminal_keys = {t: k.terminal(t) for t in changes.terminals}
        offset_keys = {p: k.labels_applied(self.labels_topic, p) for p in changes.label_offsets}
        if self.epoch is not None:  # an emptied Redis refuses the write (and the batch) before anything lands
            write.check(k.state_epoch, self.epoch)
        for key in (*customer_keys.values(), *terminal_keys.values(), *offset_keys.values()):
            write.expect(key, snapshot.get(key, ABSENT_DIGEST))
        stamp = new_stamp()
        for cid, customer in changes.customers.items():
            write.set(customer_keys[cid], stamped(customer, stamp), ttl)
        for tid, terminal in changes.terminals.items():
            write.set(terminal_keys[tid], stamped(terminal, stamp), ttl)
        for p, offset in changes.label_offsets.items():
            write.set(offset_keys[p], str(int(offset)).encode(), ttl)
        for transaction_id, raw in changes.decisions:
            write.set(k.decision(transaction_id), raw, self.decision_ttl_s)
        members: dict[str, float] = {}
        for record in changes.review_items:
            write.hashes.append((k.review_item(record.transaction_id), review_item_fields(record)))
            members[str(record.transaction_id)] = float(record.risk)
        if members:
            write.zset_key = k.review_pending
            write.members.extend((score, member) for member, score in members.items())
        for day, entries in changes.review_cases.items():
            write.appends.append((k.review_cases_day(day), encode_case_log(entries), REVIEW_CASES_TTL_S))
        if changes.settled_reviews:  # idempotent, so done before the write that may be refused and recomputed
            await self.check_epoch()
            await self.settle_reviews(changes.settled_reviews)
        written = await self._commit.send(write)
        after: dict[str, str | bytes] = dict.fromkeys((*customer_keys.values(), *terminal_keys.values()), stamp)
        after.update({offset_keys[p]: digest(str(int(o)).encode()) for p, o in changes.label_offsets.items()})
        return self._outcome(written, snapshot, after)

    async def _outcome(self, written: Awaitable[bool], snapshot: dict[str, str | bytes],
                       after: dict[str, str | bytes]) -> bool:
        if await written:
            snapshot.update(after)  # what the store holds now, for a write that follows on this state
            return True
        await self.check_epoch()  # refused: a changed terminal (recompute), or the state is gone (stop)
        return False

    async def write_rebuilt(self, customers: Mapping[int, bytes], terminals: Mapping[int, bytes],
                            label_offsets: Mapping[int, int], decisions: Sequence[tuple[int, bytes, int]],
                            chunk: int = REBUILT_WRITE_CHUNK, on_progress: Callable[[int], None] | None = None,
                            review_cases: Mapping[int, Sequence[tuple[int, float]]] | None = None) -> int:
        """Write a state rebuilt from Kafka (:mod:`fraudstream.stream.state.rebuild`) with plain SETs, pipelined by
        ``chunk`` keys: histories and label offsets expire after ``state_ttl_s``, each decision (transaction id, JSON,
        seconds left) after its own time, each day's review-case log after ``REVIEW_CASES_TTL_S``.  Nothing is
        compared: the workers are stopped.  Returns the keys written; ``on_progress`` gets the count so far after
        each chunk."""
        k, ttl = self.keys, self.state_ttl_s
        entries: list[tuple[str, bytes, int]] = []
        stamp = new_stamp()
        entries += [(k.customer(c), stamped(value, stamp), ttl) for c, value in customers.items()]
        entries += [(k.terminal(t), stamped(value, stamp), ttl) for t, value in terminals.items()]
        entries += [(k.labels_applied(self.labels_topic, p), str(int(offset)).encode(), ttl)
                    for p, offset in label_offsets.items()]
        entries += [(k.decision(transaction_id), raw, int(left)) for transaction_id, raw, left in decisions]
        entries += [(k.review_cases_day(day), encode_case_log(log), REVIEW_CASES_TTL_S)
                    for day, log in (review_cases or {}).items()]
        step = max(1, int(chunk))
        for start in range(0, len(entries), step):
            pipe = self.redis.pipeline(transaction=False)
            for key, value, expiry_s in entries[start:start + step]:
                pipe.set(key, value, ex=max(1, expiry_s))
            await pipe.execute()
            if on_progress is not None:
                on_progress(min(start + step, len(entries)))
        return len(entries)

    async def check_epoch(self) -> None:
        """Raise :class:`StateLostError` when Redis no longer holds the epoch marker read at start."""
        if self.epoch is None:
            return
        if await read_epoch(self.redis, self.keys) != self.epoch:
            raise StateLostError(lost_message(self.keys, "Redis no longer holds the state this worker started with"))

    async def settle_reviews(self, labels: Sequence[tuple[int, bool]]) -> int:
        """Resolve the pending review items among these chargeback labels (transaction id, fraud); how many."""
        args: list[str] = [self.keys.prefix, repr(time.time()), "", ""]
        for transaction_id, fraud in labels:
            args.extend((str(int(transaction_id)), "1" if fraud else "0"))
        return int(await self._settle(args=args))

    # ---- around batches ----------------------------------------------------------------------------------------
    async def label_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        if not partitions:
            return {}
        raws = cast(list[bytes | None],
                    await self.redis.mget([self.keys.labels_applied(self.labels_topic, p) for p in partitions]))
        return {p: decode_offset(raw) for p, raw in zip(partitions, raws)}

    async def read_progress(self, topic: str, partitions: Sequence[int]) -> list[bytes | None]:
        if not partitions:
            return []
        try:
            return cast(list[bytes | None], await self.redis.mget([self.keys.progress(topic, p) for p in partitions]))
        except RedisError as exc:
            raise StateStoreError(f"progress of {topic} not read: {exc!r}") from exc

    async def publish_progress(self, topic: str, progress: Mapping[int, bytes], ttl_s: float) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for partition, value in progress.items():
            pipe.set(self.keys.progress(topic, partition), value, px=int(ttl_s * MS_PER_S))
        try:
            await pipe.execute()
        except RedisError as exc:
            raise StateStoreError(f"progress of {topic} not published: {exc!r}") from exc

    # ---- review queue ------------------------------------------------------------------------------------------
    async def pending_reviews(self, limit: int) -> list[tuple[int, float]]:
        rows = cast(list[tuple[bytes, float]],
                    await self.redis.zrevrange(self.keys.review_pending, 0, limit - 1, withscores=True))
        return [(int(member), float(score)) for member, score in rows]

    async def pending_review_count(self) -> int:
        return int(await self.redis.zcard(self.keys.review_pending))

    async def review_item(self, transaction_id: int) -> dict[str, str]:
        raw = await self.redis.hgetall(self.keys.review_item(transaction_id))
        return {_text(k): _text(v) for k, v in raw.items()}

    async def resolve_review(self, transaction_id: int, fields: Mapping[str, str]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.review_item(transaction_id), mapping={k: v for k, v in fields.items()})
            pipe.zrem(self.keys.review_pending, str(transaction_id))
            await pipe.execute()

