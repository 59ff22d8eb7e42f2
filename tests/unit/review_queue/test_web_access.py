"""Who may do what on the review page, route by route, against a real Redis: the route table's access levels,
admin routes refused to analysts, the CSRF token on every state-changing route, failed-login lock-outs per user
name and per address (and their end), and the idle time-out of a session.  A refused request changes nothing in
Redis."""

from __future__ import annotations

import time

import pytest

from fraudstream.review_queue.web.app import routes
from fraudstream.review_queue.web.auth import access

from .conftest import review_record
from .webclient import ADDRESS_HEADER, PASSWORD, WebHarness

PUBLIC = {("GET", "/login"), ("POST", "/login"), ("POST", "/api/login"), ("GET", "/health"), ("GET", "/metrics")}
ADMIN = {("GET", "/users"), ("POST", "/users"), ("POST", "/users/{name}/remove"), ("POST", "/users/{name}/role"),
         ("GET", "/audit"), ("GET", "/audit.csv"), ("GET", "/api/audit"),
         ("POST", "/blocklist/{customer_id:int}/lift"), ("POST", "/api/blocklist/{customer_id:int}/lift"),
         ("POST", "/case/{customer_id:int}/reassign"), ("POST", "/api/cases/{customer_id:int}/reassign")}
#: A valid body for each state-changing route that needs one (so that only the check under test refuses it).
BODIES = {"verdict": {"verdict": "fraud", "note": "n"}, "reassign": {"analyst": "ann"}, "lift": {"note": "n"},
          "role": {"role": "admin"}, "users": {"name": "eve", "role": "admin"}}


def concrete(path: str) -> str:
    return path.replace("{customer_id:int}", "1").replace("{name}", "ann")


def endpoints():
    """(method, path template, endpoint) of every route."""
    for route in routes():
        for method in sorted(route.methods - {"HEAD"}):
            yield method, route.path, route.endpoint


def send(web, method: str, path: str, token: str = ""):
    """The request with a valid body for its route, as a form (page) or JSON (API), with the CSRF header."""
    body = BODIES.get(path.rsplit("/", 1)[-1], {})
    headers = {"X-CSRF-Token": token} if token else {}
    if method == "GET":
        return web.client.get(concrete(path), headers=headers)
    if path.startswith("/api/"):
        return web.client.post(concrete(path), headers=headers, json=body or None)
    return web.client.post(concrete(path), headers=headers, data=body)


async def snapshot(redis, prefix: str) -> dict:
    """Every key under the prefix with its value (what a refused request must leave as it was)."""
    out = {}
    async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        kind = await redis.type(key)
        if kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "string":
            value = await redis.get(key)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(await redis.smembers(key))
        elif kind == "stream":
            value = await redis.xrange(key)
        else:
            value = kind
        out[key] = value
    return out


@pytest.fixture
def web(redis_url):
    """ann (analyst) and root (admin); card 1's case held by root with one item labelled fraud (so the card is
    blocked) and one pending; card 2's case open."""
    with WebHarness(redis_url) as h:
        h.add_user("ann")
        h.add_user("root", "admin")
        h.add_items(review_record(1, 1, 100.0, 0.9), review_record(2, 1, 50.0, 0.8), review_record(3, 2, 10.0, 0.5))
        h.call(h.service.cases.claim, "root", 1, admin=True)
        h.call(h.service.cases.verdict, "root", 1, "fraud", transaction_id=1, admin=True)
        yield h


def state(web) -> dict:
    return web.call(snapshot, web.service.redis, web.prefix)


def test_the_route_table_says_what_each_route_needs(web):
    table = {(method, path): access(endpoint) for method, path, endpoint in endpoints()}
    assert {k for k, v in table.items() if v == "public"} == PUBLIC
    assert {k for k, v in table.items() if v == "admin"} == ADMIN
    assert len(table) - len(PUBLIC) - len(ADMIN) >= 20  # the rest need a session


def test_every_admin_route_refuses_an_analyst_with_a_valid_token_and_changes_nothing(web):
    web.login("ann")
    token = web.csrf()
    before = state(web)
    for method, path, endpoint in endpoints():
        if access(endpoint) == "admin":
            response = send(web, method, path, token)
            assert response.status_code == 403, (method, path, response.status_code)
            assert "admin" in response.text
    assert state(web) == before
    # the same requests pass for an admin (so the role alone refused them)
    web.client.post("/logout", data={"csrf_token": token})
    web.login("root")
    token = web.csrf()
    assert send(web, "POST", "/api/cases/{customer_id:int}/reassign", token).status_code == 200
    assert web.call(web.service.cases.case, 1).owner == "ann"
    assert send(web, "POST", "/api/blocklist/{customer_id:int}/lift", token).status_code == 200
    assert send(web, "GET", "/api/audit", token).json()["entries"][0]["action"] == "unblock"


def test_every_state_changing_route_refuses_a_request_without_the_csrf_token_and_changes_nothing(web):
    web.login("root")
    token = web.csrf()
    before = state(web)
    checked = 0
    for method, path, endpoint in endpoints():
        if method != "POST" or access(endpoint) == "public":
            continue
        for forged in ("", "forged-" + token[:10]):
            response = send(web, method, path, forged)
            assert response.status_code == 403, (path, forged, response.status_code)
            assert "CSRF" in response.text
        checked += 1
    assert checked >= 18
    assert state(web) == before  # no verdict, lease, block, user or session change
    # the same requests with the session's token are accepted
    assert send(web, "POST", "/api/cases/{customer_id:int}/verdict", token).json()["result"] == "ok"
    assert send(web, "POST", "/users", token).status_code == 200
    assert web.call(web.service.users.get, "eve").role == "admin"


def test_ten_failures_from_one_address_lock_that_address_for_every_name(web):
    for i in range(10):
        assert web.login(f"guess{i}", "wrong password", address="10.0.0.1").status_code == 401
    locked = web.login("ann", PASSWORD, address="10.0.0.1")
    assert locked.status_code == 429 and "set-cookie" not in locked.headers
    api = web.client.post("/api/login", json={"user": "root", "password": PASSWORD},
                          headers={ADDRESS_HEADER.decode(): "10.0.0.1"})
    assert api.status_code == 429 and "locked" in api.json()["error"]
    assert web.login("ann", PASSWORD, address="10.0.0.2").status_code == 303  # the name itself is not locked


def test_ten_failures_for_one_name_lock_that_name_from_every_address_until_the_lock_out_ends(redis_url):
    with WebHarness(redis_url, overrides={"lockout_s": 2}) as web:
        web.add_user("ann")
        web.add_user("root", "admin")
        for i in range(10):
            assert web.login("ann", "wrong password", address=f"10.0.1.{i}").status_code == 401
        locked = web.login("ann", PASSWORD, address="10.0.2.1")
        assert locked.status_code == 429 and "set-cookie" not in locked.headers
        assert web.login("root", PASSWORD, address="10.0.2.1").status_code == 303  # the address is not locked
        time.sleep(2.5)
        assert web.login("ann", PASSWORD, address="10.0.2.1").status_code == 303


def test_a_session_idle_for_longer_than_the_time_out_is_refused(redis_url):
    with WebHarness(redis_url, overrides={"session_idle_s": 2}) as web:
        web.add_user("ann")
        assert web.login("ann").status_code == 303
        time.sleep(1.0)
        assert web.client.get("/api/session").status_code == 200  # a request renews the idle time-out
        time.sleep(1.2)
        assert web.client.get("/api/session").status_code == 200
        time.sleep(2.5)
        assert web.client.get("/api/session").status_code == 401
        page = web.client.get("/queue")
        assert page.status_code == 303 and page.headers["location"] == "/login"
