"""The state store's Redis client packs commands with hiredis into the same bytes as redis-py's own packer."""

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from fraudstream.stream.state.redis_client import (
    HiredisConnection,
    HiredisSSLConnection,
    HiredisUnixConnection,
    redis_from_url,
)

COMMANDS = [
    ("GET", "fs:c:1"),
    ("CONFIG GET", "maxmemory"),
    (b"EVALSHA", "ab" * 20, 2, "k1", b"k2", b"\x00\xffbinary", 86400, 0.25, "caf\u00e9", memoryview(b"view")),
    ("MGET", *[f"fs:t:{i}" for i in range(3000)]),
    ("SET", "k", b"x" * 100_000, "EX", 60),
    ("SET", "k", bytearray(b"mutable"), "EX", 60),
    # the batch write: large values (packed without hiredis) between small arguments of every type
    ("EVALSHA", "ab" * 20, 3, "k1", "k2", "k3", b"\x00" * 3_500, 86400, bytearray(b"\xff" * 2_000), 0.5,
     memoryview(b"m" * 5_000), "caf\u00e9", -7, b""),
    ("SET", "k", memoryview(b"v" * 2_048)),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: str(a[0]))
def test_same_bytes_as_redis_py(args):
    expected = b"".join(bytes(p) for p in Connection().pack_command(*args))
    assert b"".join(HiredisConnection().pack_command(*args)) == expected


@pytest.mark.parametrize("value", [b"x" * 10, b"x" * 10_000], ids=["small", "large"])
def test_unpackable_argument_is_a_data_error(value):
    with pytest.raises(DataError):
        HiredisConnection().pack_command("SET", "k", value, object())


@pytest.mark.parametrize("url, expected", [("redis://127.0.0.1:1/0", HiredisConnection),
                                           ("rediss://127.0.0.1:1/0", HiredisSSLConnection),
                                           ("unix:///tmp/none.sock", HiredisUnixConnection)])
def test_url_scheme_keeps_its_transport(url, expected):
    client = redis_from_url(url)
    cls = client.connection_pool.connection_class
    assert cls is expected
    assert issubclass(cls, {HiredisConnection: Connection, HiredisSSLConnection: SSLConnection,
                            HiredisUnixConnection: UnixDomainSocketConnection}[expected])
