"""Login sessions and failed-login limits in Redis.

A session is a random token (in an HttpOnly, SameSite=Strict cookie); Redis keeps only its SHA-256 digest, the
user, the CSRF token of the session and the login time, with an expiry that every request renews up to the idle
time-out, and never beyond the absolute maximum after login.  Logout deletes it.

Failed logins are counted per user name and per client address within a window; when either count reaches the
limit, that name or address is locked out for the lock-out period, whatever password comes next.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fraudstream.review_queue.settings import ReviewSettings
from fraudstream.stream.state.keys import ReviewKeys

TOKEN_BYTES = 32


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str
    created_at: float

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf.encode(), str(presented).encode())


class SessionStore:
    def __init__(self, redis: Any, settings: ReviewSettings, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = ReviewKeys(settings.redis_prefix)
        self.clock = clock

    async def create(self, user: str) -> str:
        """A new session for ``user``; returns the token for the cookie."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        key = self.keys.session(_digest(token))
        await self.redis.hset(key, mapping={"user": user, "csrf": secrets.token_urlsafe(TOKEN_BYTES),
                                            "created_at": repr(self.clock())})
        await self.redis.expire(key, self.settings.session_idle_s)
        return token

    async def get(self, token: str | None) -> Session | None:
        """The live session of this token (its idle expiry renewed), or None."""
        if not token or len(token) > 128:
            return None
        key = self.keys.session(_digest(token))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(key)
            pipe.expire(key, self.settings.session_idle_s)  # renew the idle time-out (no-op when absent)
            h, _ = await pipe.execute()
        if not h or "user" not in h:
            return None
        created = float(h.get("created_at", 0))
        age = self.clock() - created
        if age >= self.settings.session_max_s or age < 0:
            await self.redis.delete(key)
            return None
        if self.settings.session_max_s - age < self.settings.session_idle_s:
            await self.redis.expire(key, max(1, int(self.settings.session_max_s - age)))
        return Session(h["user"], h.get("csrf", ""), created)

    async def delete(self, token: str | None) -> None:
        if token:
            await self.redis.delete(self.keys.session(_digest(token)))


class LoginGuard:
    """Failed-login counting and lock-outs per user name and per client address."""

    KINDS = ("user", "addr")

    def __init__(self, redis: Any, settings: ReviewSettings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = ReviewKeys(settings.redis_prefix)

    async def locked(self, user: str, addr: str) -> bool:
        keys = [self.keys.lock("user", user[:64]), self.keys.lock("addr", addr)]
        return bool(await self.redis.exists(*keys))

    async def failed(self, user: str, addr: str) -> bool:
        """Count one failed login; True when this failure locked the name or the address."""
        s = self.settings
        locked = False
        for kind, who in (("user", user[:64]), ("addr", addr)):
            key = self.keys.login_failures(kind, who)
            count = await self.redis.incr(key)
            if int(count) == 1:
                await self.redis.expire(key, s.login_window_s)
            if int(count) >= s.login_max_failures:
                await self.redis.set(self.keys.lock(kind, who), "1", ex=s.lockout_s)
                await self.redis.delete(key)
                locked = True
        return locked

    async def succeeded(self, user: str) -> None:
        await self.redis.delete(self.keys.login_failures("user", user[:64]))
