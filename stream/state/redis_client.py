"""The worker's asyncio Redis client, with commands packed and replies parsed in C (``hiredis``).

redis-py parses replies with hiredis when it is installed, but its asyncio connections pack every command in
Python, about 1 us per argument: the batch write (one script call with a few arguments per transaction) and the
batch read (one MGET of four keys per transaction) spent most of their client time there.  The connections made
here pack with ``hiredis.pack_command``, as redis-py's own synchronous client does.  Measured in one process
against a local redis-server (client CPU per transaction, batches of 1,000): the write 11-13 us -> 5 us, the read
15 us -> 1.5 us (hiredis parsing and packing together).

hiredis's packer is slow for large values (about 2 ns a byte here, 7 us for a 3.5 kB history): the batch write
of a 4,000-transaction batch (2,000 histories of 3.5 kB, 4,000 decisions of 600 bytes, 20,000 arguments in all)
took 26 ms to pack, 7% of the worker's CPU on its bench.  A command with an argument over
:data:`LARGE_ARGUMENT_BYTES` is packed here instead, as a list of chunks that leaves each value uncopied until the
socket write joins them: 11 ms for the same write, the join included.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

try:
    import hiredis

    HIREDIS: bool = True
except ImportError:  # pragma: no cover (a declared dependency; redis-py's packing is the fallback)
    HIREDIS = False


#: Arguments longer than this (bytes) make the command packed without hiredis (see the module's docstring).
LARGE_ARGUMENT_BYTES = 1024
_BYTES_LIKE = (bytes, bytearray, memoryview)


def _pack_chunks(args: tuple[Any, ...]) -> list[bytes | bytearray | memoryview] | None:
    """RESP chunks of a command (the same bytes as redis-py's packer, joined), values not copied; None when an
    argument is of a type this does not pack (the caller's packer then decides)."""
    chunks: list[bytes | bytearray | memoryview] = [b"*%d\r\n" % len(args)]
    extend = chunks.extend
    for arg in args:
        kind = type(arg)  # exact types first: most arguments are bytes, str or int
        value: bytes | bytearray | memoryview
        if kind is bytes or kind is bytearray:
            value = arg
        elif kind is str:
            value = arg.encode()
        elif kind is int:
            value = b"%d" % arg
        elif kind is float:
            value = repr(arg).encode()
        elif isinstance(arg, memoryview):
            value = arg.cast("B")
        else:
            return None
        extend((b"$%d\r\n" % len(value), value, b"\r\n"))
    return chunks


class _HiredisPacking:
    """Connection mix-in: ``pack_command`` by hiredis (same bytes on the wire as redis-py's packer); commands with
    large values packed in chunks instead; a command's drain returns once all of it is on the socket."""

    async def on_connect(self) -> None:
        """A drain after writing a command waits until the whole command is on the socket, not only until the
        transport holds less than asyncio's low-water mark (16 kB): a batch's state write is several MB, and the
        worker decides the next chunk of its batch while Redis runs it (``BatchCommit.send``).  A tail left in the
        transport would be sent only when the event loop next runs, after that computation, and Redis cannot start
        the script before it has the whole call."""
        await super().on_connect()  # type: ignore[misc]
        writer = getattr(self, "_writer", None)
        if writer is not None:
            writer.transport.set_write_buffer_limits(high=0, low=0)

    def pack_command(self, *args: Any) -> list[bytes]:
        head = args[0]
        if isinstance(head, str):
            args = (*head.encode().split(), *args[1:])
        elif b" " in head:
            args = (*head.split(), *args[1:])
        if any(isinstance(a, _BYTES_LIKE) and len(a) > LARGE_ARGUMENT_BYTES for a in args):
            chunks = _pack_chunks(args)
            if chunks is not None:
                return chunks  # type: ignore[return-value]  # bytes-like chunks: the writer joins them
        try:
            packed: bytes = hiredis.pack_command(args)
        except TypeError:  # a bytearray (which hiredis does not take), or a type nothing packs
            try:
                packed = hiredis.pack_command(tuple(  # type: ignore[arg-type]
                    bytes(a) if isinstance(a, (bytearray, memoryview)) else a for a in args))
            except TypeError as exc:
                raise DataError(str(exc)) from exc
        return [packed]


class HiredisConnection(_HiredisPacking, Connection):
    """TCP connection (``redis://``)."""


class HiredisSSLConnection(_HiredisPacking, SSLConnection):
    """TLS connection (``rediss://``)."""


class HiredisUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    """Unix socket connection (``unix://``)."""


_FAST = {Connection: HiredisConnection, SSLConnection: HiredisSSLConnection,
         UnixDomainSocketConnection: HiredisUnixConnection}


def redis_from_url(url: str, **kwargs: Any) -> Redis:
    """``redis.asyncio.from_url(url, **kwargs)`` whose connections pack commands with hiredis (when installed)."""
    client: Redis = aioredis.from_url(url, **kwargs)
    pool = client.connection_pool
    if HIREDIS:  # set before the first connection is made; the URL's transport is kept
        pool.connection_class = _FAST.get(pool.connection_class, pool.connection_class)
    return client
