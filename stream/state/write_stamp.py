"""The write stamp in front of every stored history: what a compare-and-write checks instead of a hash.

A customer or terminal history is stored as ``stamp + history bytes``: the stamp is :data:`STAMP_MAGIC` and
:data:`TOKEN_BYTES` random bytes drawn once per batch write, so two writes of a key never leave the same stamp
(a collision needs the same 96 random bits).  A batch that read a history remembers its stamp; the commit script
compares the stored value's first :data:`STAMP_BYTES` bytes (``GETRANGE``) with it, where it would otherwise hash
the whole history on both sides (SHA-1 of a few kB per key in Lua and in Python).  A value without the magic (a
history written before stamps, or by a writer that does not stamp) is checked by its SHA-1, as before, and gets a
stamp when it is written again.
"""

from __future__ import annotations

import os

#: First bytes of a stamp (histories themselves start with ``FSC1`` / ``FST1``).
STAMP_MAGIC = b"FSW1"
#: Random bytes of a stamp after the magic.
TOKEN_BYTES = 12
#: Length of a stamp (bytes): what the commit script reads back with ``GETRANGE 0 STAMP_BYTES-1``.
STAMP_BYTES = len(STAMP_MAGIC) + TOKEN_BYTES


def new_stamp() -> bytes:
    """A fresh stamp for one batch's writes."""
    return STAMP_MAGIC + os.urandom(TOKEN_BYTES)


def stamped(value: bytes, stamp: bytes) -> bytes:
    """What is stored: the stamp, then the value."""
    return stamp + value


def unstamped(raw: bytes) -> tuple[bytes, bytes | None]:
    """A stored value as (value, its stamp); the stamp is None for a value stored without one."""
    if len(raw) >= STAMP_BYTES and raw.startswith(STAMP_MAGIC):
        return raw[STAMP_BYTES:], raw[:STAMP_BYTES]
    return raw, None


def value_of(raw: bytes | None) -> bytes | None:
    """A stored value without its stamp (None stays None): for readers that only look (the case file)."""
    return None if raw is None else unstamped(raw)[0]
