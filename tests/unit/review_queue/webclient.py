"""A review app under Starlette's test client on a real Redis, with users and items seeded as in production."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from fraudstream.review_queue.settings import ReviewSettings
from fraudstream.review_queue.users import UserStore
from fraudstream.review_queue.web import create_app

from .conftest import Clock, write_review_items

PASSWORD = "correct horse battery"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')
#: Request header the test client sets to send a request from another client address.
ADDRESS_HEADER = b"x-test-client-address"


class ClientAddress:
    """ASGI wrapper: a request with :data:`ADDRESS_HEADER` comes from that address (as a proxy-less server sees
    it), so one test client can log in from several addresses."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers", [])).get(ADDRESS_HEADER)
            if given:
                scope = {**scope, "client": (given.decode(), 50_000)}
        await self.app(scope, receive, send)


@dataclass
class WebHarness:
    url: str
    overrides: dict = field(default_factory=dict)
    prefix: str = field(default_factory=lambda: f"w{uuid.uuid4().hex[:10]}")
    clock: Clock = field(default_factory=Clock)

    def __enter__(self) -> WebHarness:
        from starlette.testclient import TestClient

        # cheap password hashing: the tests log in dozens of times (production keeps the strong default)
        values = {"password_time_cost": 1, "password_memory_kib": 8 * 1024, **self.overrides}
        self.settings = ReviewSettings(redis_url=self.url, redis_prefix=self.prefix, **values)
        self.app = create_app(self.settings, clock=self.clock, background=False)
        self.client = TestClient(ClientAddress(self.app), base_url="http://testserver", follow_redirects=False)
        self.client.__enter__()
        self.service = self.app.state.service
        return self

    def __exit__(self, *exc: Any) -> None:
        async def cleanup() -> None:
            keys = [k async for k in self.service.redis.scan_iter(match=f"{self.prefix}:*", count=1000)]
            if keys:
                await self.service.redis.delete(*keys)

        self.call(cleanup)
        self.client.__exit__(*exc)

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run an async function on the app's event loop."""
        return self.client.portal.call(lambda: fn(*args, **kwargs))

    def add_user(self, name: str, role: str = "analyst") -> None:
        self.call(UserStore(self.service.redis, self.settings, clock=self.clock).add, name, PASSWORD, role)

    def add_items(self, *records: Any) -> None:
        async def write() -> None:
            await write_review_items(self.url, self.prefix, records)
            await self.service.cases.ingest()

        self.call(write)

    def login(self, name: str, password: str = PASSWORD, address: str = "") -> Any:
        headers = {ADDRESS_HEADER.decode(): address} if address else {}
        return self.client.post("/login", data={"user": name, "password": password}, headers=headers)

    def csrf(self) -> str:
        page = self.client.get("/queue")
        match = CSRF_META.search(page.text)
        assert match and match.group(1), page.text[:500]
        return match.group(1)
