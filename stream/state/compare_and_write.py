"""Atomic compare-and-write of one micro-batch's Redis state: one script call, one round trip.

The Redis store reads every key of a batch with one MGET; the worker core computes; the store then writes
everything the batch changed (histories, decisions, label offsets, review items) with :class:`BatchCommit`.  The
write is one Lua script, run atomically by Redis, that first checks the *checked* keys (the shared state the
batch was computed from) still hold what was read and writes nothing when one changed: the caller then recomputes
the batch from fresh state.  A key is checked by its write stamp when the value read carried one (the first
bytes of the stored value, :mod:`~fraudstream.stream.state.write_stamp`: histories), else by the SHA-1 of the
value (small values: label offsets, the state epoch), or as absent.  This is optimistic concurrency like
WATCH/MULTI, but linear in the number of keys (WATCH of n keys costs O(n^2) in Redis) and without one queued
command per key on the client.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from string import Template
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from fraudstream.stream.state.base import settled
from fraudstream.stream.state.write_stamp import STAMP_BYTES, STAMP_MAGIC

#: Digest that stands for "the key did not exist when it was read".
ABSENT_DIGEST = ""

#: KEYS: checked keys, then SET keys, then hash keys, then (when there are members) one sorted-set key, then the
#: APPEND keys.
#: ARGV: the five counts (checked keys, groups of SET keys, hash keys, members, APPEND keys), then one expectation
#: per checked key (a write stamp, a SHA-1 hex digest, or empty for absent), then per group of SET keys sharing an
#: expiry its ttl (s), its size and one value per key, then per hash key its field count followed by fields and
#: values, then (score, member) per sorted-set member, then (value, ttl s) per APPEND key (appended unchecked, its
#: expiry set).  (A ttl per group rather than per key: a batch's thousands of keys have
#: two expiries; a third fewer arguments took Redis 5-20% less time for the script on 8,000 SETs, and the client
#: packs less.)
#: Returns 1 when written, 0 (nothing written) when a checked key changed.
COMPARE_AND_WRITE_LUA = Template("""
local n_checked, n_ttl, n_hash, n_members = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local n_append = tonumber(ARGV[5])
local a = 5
for i = 1, n_checked do
  local expected = ARGV[a + i]
  if #expected == $stamp_bytes and string.sub(expected, 1, $magic_bytes) == '$magic' then
    if redis.call('GETRANGE', KEYS[i], 0, $stamp_last) ~= expected then return 0 end
  else
    local value = redis.call('GET', KEYS[i])
    if value then
      if redis.sha1hex(value) ~= expected then return 0 end
    elseif expected ~= '' then
      return 0
    end
  end
end
a = a + n_checked
local k = n_checked
for g = 1, n_ttl do
  local ttl, n = ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 2
  for i = 1, n do
    redis.call('SET', KEYS[k + i], ARGV[a + i], 'EX', ttl)
  end
  k = k + n
  a = a + n
end
for i = 1, n_hash do
  local n = tonumber(ARGV[a + 1])
  redis.call('HSET', KEYS[k + i], unpack(ARGV, a + 2, a + 1 + 2 * n))
  a = a + 1 + 2 * n
end
k = k + n_hash
if n_members > 0 then
  for i = 1, n_members do
    redis.call('ZADD', KEYS[k + 1], ARGV[a + 1], ARGV[a + 2])
    a = a + 2
  end
  k = k + 1
end
for i = 1, n_append do
  redis.call('APPEND', KEYS[k + i], ARGV[a + 1])
  redis.call('EXPIRE', KEYS[k + i], ARGV[a + 2])
  a = a + 2
end
return 1
""").substitute(stamp_bytes=STAMP_BYTES, magic_bytes=len(STAMP_MAGIC), magic=STAMP_MAGIC.decode("ascii"),
                  stamp_last=STAMP_BYTES - 1)


def digest(raw: bytes | None) -> str:
    """What the script compares: SHA-1 hex of the value read, or :data:`ABSENT_DIGEST` for a missing key."""
    return ABSENT_DIGEST if raw is None else hashlib.sha1(raw).hexdigest()


@dataclass
class BatchWrite:
    """Everything one batch writes, collected before the single script call.

    checked : key -> what the batch read there: its write stamp, the SHA-1 digest of the value, or
        :data:`ABSENT_DIGEST`.
    sets : (key, value, ttl s) written with SET ... EX.
    hashes : (key, field mapping) written with HSET.
    zset_key, members : sorted set and its (score, member) pairs written with ZADD.
    appends : (key, bytes, ttl s) appended with APPEND (unchecked), the key's expiry set to the ttl.
    """

    checked: dict[str, str | bytes] = field(default_factory=dict)
    sets: list[tuple[str, bytes, int]] = field(default_factory=list)
    hashes: list[tuple[str, Mapping[str, str]]] = field(default_factory=list)
    zset_key: str | None = None
    members: list[tuple[float, str]] = field(default_factory=list)
    appends: list[tuple[str, bytes, int]] = field(default_factory=list)

    def check(self, key: str, raw: bytes | None) -> None:
        """Check ``key`` by the SHA-1 of the value read (``raw``; None: absent)."""
        self.checked[key] = digest(raw)

    def expect(self, key: str, expected: str | bytes) -> None:
        """Check ``key`` against an expectation made at read time (a stamp, a digest or absent)."""
        self.checked[key] = expected

    def set(self, key: str, value: bytes, ttl_s: int) -> None:
        self.sets.append((key, value, int(ttl_s)))

    def _set_groups(self) -> list[tuple[int, list[tuple[str, bytes, int]]]]:
        """The SET keys as runs of consecutive keys sharing a ttl (order kept): (ttl s, the run)."""
        groups: list[tuple[int, list[tuple[str, bytes, int]]]] = []
        for item in self.sets:
            if groups and groups[-1][0] == item[2]:
                groups[-1][1].append(item)
            else:
                groups.append((item[2], [item]))
        return groups

    @property
    def empty(self) -> bool:
        return not (self.sets or self.hashes or self.members or self.appends)

    def script_args(self) -> tuple[list[str], list[bytes | str | int]]:
        """KEYS and ARGV of :data:`COMPARE_AND_WRITE_LUA` for this write."""
        members = self.members if self.zset_key is not None else []
        keys: list[str] = list(self.checked)
        groups = self._set_groups()
        args: list[bytes | str | int] = [len(self.checked), len(groups), len(self.hashes), len(members),
                                         len(self.appends)]
        args.extend(self.checked.values())
        for ttl, sets in groups:
            args.append(ttl)
            args.append(len(sets))
            keys.extend(key for key, _, _ in sets)
            args.extend(value for _, value, _ in sets)
        for key, mapping in self.hashes:
            keys.append(key)
            args.append(len(mapping))
            for name, text in mapping.items():
                args.append(name)
                args.append(text)
        if members and self.zset_key is not None:
            keys.append(self.zset_key)
            for score, member in members:
                args.append(repr(float(score)))
                args.append(member)
        for key, value, ttl in self.appends:
            keys.append(key)
            args.append(value)
            args.append(int(ttl))
        return keys, args


class BatchCommit:
    """Runs :class:`BatchWrite` objects against one Redis client (``redis.asyncio``).

    Parameters
    ----------
    redis : client with ``decode_responses=False``.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._script = redis.register_script(COMPARE_AND_WRITE_LUA)

    async def __call__(self, write: BatchWrite) -> bool:
        """Apply the write atomically; False (nothing written) when a checked key changed since it was read."""
        return await (await self.send(write))

    async def send(self, write: BatchWrite) -> Awaitable[bool]:
        """Send the write and return, once Redis has the whole script call, the awaitable of its result.

        The caller may compute meanwhile (the next chunk of a batch) while Redis runs the script: the call is on
        the socket by then (the client's connections flush large commands entirely before a drain returns, see
        :mod:`~fraudstream.stream.state.redis_client`), so Redis need not wait for the caller's event loop.  The
        connection stays held until the result is read.
        """
        if write.empty:
            return settled(True)
        keys, args = write.script_args()
        pool = self._redis.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        command = ("EVALSHA", self._script.sha, len(keys), *keys, *args)
        try:
            await connection.send_command(*command)
        except BaseException:
            await connection.disconnect()
            await pool.release(connection)
            raise
        return self._result(connection, command)

    async def _result(self, connection: Any, command: tuple[Any, ...]) -> bool:
        pool = self._redis.connection_pool
        try:
            try:
                reply = await connection.read_response()
            except NoScriptError:  # a Redis that restarted or flushed its scripts: load it, then call it again
                await connection.send_command("SCRIPT", "LOAD", self._script.script)
                await connection.read_response()
                await connection.send_command(*command)
                reply = await connection.read_response()
        except BaseException:
            await connection.disconnect()  # a reply may still be on its way: the connection is not reused
            raise
        finally:
            await pool.release(connection)
        return bool(reply)
