"""Analyst and admin accounts in Redis; passwords hashed with Argon2id (``argon2-cffi``), never stored or logged.

Each account is a hash ``<p>:review:user:<name>`` (``role``, ``password_hash``, ``created_at``) and a member of
``<p>:review:users``.  Changes are written to the audit journal with the acting user.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from fraudstream.review_queue.settings import ReviewSettings
from fraudstream.stream.state.keys import ReviewKeys

ROLES = ("analyst", "admin")
#: Account names: letters, digits, dot, dash, underscore; 1 to 64 characters.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
#: Length (characters) of generated passwords.
GENERATED_PASSWORD_LENGTH = 20
MS_PER_S = 1000


class UserError(ValueError):
    """A user operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    created_at: float

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise UserError(f"user name: expected 1-64 letters, digits, '.', '-' or '_', got {name!r}")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
    return role


def check_password(password: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise UserError(f"password: expected {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters")
    return password


def generate_password() -> str:
    return secrets.token_urlsafe(GENERATED_PASSWORD_LENGTH)[:GENERATED_PASSWORD_LENGTH]


class UserStore:
    """Accounts on one ``redis.asyncio`` client (``decode_responses=True``)."""

    def __init__(self, redis: Any, settings: ReviewSettings, hasher: PasswordHasher | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = ReviewKeys(settings.redis_prefix)
        self.hasher = hasher or PasswordHasher(time_cost=settings.password_time_cost,
                                               memory_cost=settings.password_memory_kib)
        self.clock = clock
        self._dummy_hash: str | None = None

    async def _hash(self, password: str) -> str:
        """Argon2id hash, computed off the event loop (it takes most of a second by design)."""
        return await asyncio.to_thread(self.hasher.hash, password)

    async def _audit(self, actor: str, action: str, name: str, before: str, after: str) -> None:
        cutoff = str(int((self.clock() - self.settings.retention_s) * MS_PER_S))
        await self.redis.xadd(self.keys.audit, {"at": repr(self.clock()), "actor": actor, "action": action,
                                                "target": f"user:{name}", "before": before, "after": after,
                                                "note": ""}, minid=cutoff, approximate=True)

    async def add(self, name: str, password: str, role: str = "analyst", actor: str = "cli") -> User:
        check_name(name), check_role(role), check_password(password)
        key = self.keys.user(name)
        created = self.clock()
        ok = await self.redis.hsetnx(key, "role", role)
        if not ok:
            raise UserError(f"user {name!r} already exists")
        await self.redis.hset(key, mapping={"password_hash": await self._hash(password), "created_at": repr(created)})
        await self.redis.sadd(self.keys.users, name)
        await self._audit(actor, "user-add", name, "", role)
        return User(name, role, created)

    async def get(self, name: str) -> User | None:
        if not NAME_PATTERN.match(name or ""):
            return None
        h = await self.redis.hgetall(self.keys.user(name))
        if not h or "password_hash" not in h:
            return None
        return User(name, h.get("role", "analyst"), float(h.get("created_at", 0)))

    async def list(self) -> list[User]:
        names = sorted(await self.redis.smembers(self.keys.users))
        users = [await self.get(n) for n in names]
        return [u for u in users if u is not None]

    async def remove(self, name: str, actor: str = "cli") -> None:
        user = await self.get(name)
        if user is None:
            raise UserError(f"no user {name!r}")
        await self.redis.delete(self.keys.user(name))
        await self.redis.srem(self.keys.users, name)
        await self._audit(actor, "user-remove", name, user.role, "")

    async def set_role(self, name: str, role: str, actor: str = "cli") -> None:
        check_role(role)
        user = await self.get(name)
        if user is None:
            raise UserError(f"no user {name!r}")
        await self.redis.hset(self.keys.user(name), "role", role)
        await self._audit(actor, "set-role", name, user.role, role)

    async def set_password(self, name: str, password: str, actor: str = "cli") -> None:
        check_password(password)
        if await self.get(name) is None:
            raise UserError(f"no user {name!r}")
        await self.redis.hset(self.keys.user(name), "password_hash", await self._hash(password))
        await self._audit(actor, "set-password", name, "", "")

    async def verify(self, name: str, password: str) -> User | None:
        """The user when the password is right, else None (same work either way)."""
        stored = None
        if NAME_PATTERN.match(name or "") and len(password) <= MAX_PASSWORD_LENGTH:
            stored = await self.redis.hget(self.keys.user(name), "password_hash")
        if stored is None and self._dummy_hash is None:
            # verified against for unknown names, so a login takes as long whether the name exists or not
            self._dummy_hash = await self._hash(generate_password())
        try:
            await asyncio.to_thread(self.hasher.verify, str(stored or self._dummy_hash), password[:MAX_PASSWORD_LENGTH])
        except (VerificationError, InvalidHashError):
            return None
        if stored is None:
            return None
        return await self.get(name)
