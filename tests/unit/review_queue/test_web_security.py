"""Security of the review page against a real Redis: sessions on every route, roles, CSRF, escaping,
rate-limited logins, session expiry, cookie flags, and bad input refused without changes."""

from __future__ import annotations

import pytest

from fraudstream.review_queue.web.app import routes

from .conftest import T0, review_record
from .webclient import PASSWORD, WebHarness

PUBLIC = {"/login", "/api/login", "/health", "/metrics"}


@pytest.fixture
def web(redis_url):
    with WebHarness(redis_url) as h:
        h.add_user("ann")
        h.add_user("root", "admin")
        yield h


def concrete(path: str) -> str:
    return path.replace("{customer_id:int}", "1").replace("{name}", "ann")


def test_every_route_but_login_and_health_refuses_a_request_without_a_session(web):
    checked = 0
    for route in routes():
        if route.path in PUBLIC:
            continue
        for method in sorted(route.methods - {"HEAD"}):
            response = web.client.request(method, concrete(route.path))
            if method == "GET" and not route.path.startswith("/api/"):
                assert response.status_code == 303 and response.headers["location"] == "/login", route.path
            else:
                assert response.status_code == 401, (method, route.path, response.status_code)
            checked += 1
    assert checked >= 30
    assert web.client.get("/health").json() == {"status": "ok", "redis": True}
    assert web.client.get("/login").status_code == 200


def test_admin_routes_refuse_analysts(web):
    web.login("ann")
    token = web.csrf()
    assert web.client.get("/users").status_code == 403
    assert web.client.get("/audit").status_code == 403
    assert web.client.get("/audit.csv").status_code == 403
    assert web.client.post("/users", data={"csrf_token": token, "name": "eve", "role": "admin"}).status_code == 403
    assert web.call(web.service.users.get, "eve") is None
    web.client.post("/logout", data={"csrf_token": token})
    web.login("root")
    assert web.client.get("/users").status_code == 200
    assert web.client.get("/audit.csv").text.startswith("id,at,actor,action")


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(web):
    web.add_items(review_record(1, 10, 100.0, 0.9))
    web.login("ann")
    assert web.client.post("/next").status_code == 403
    assert web.client.post("/next", data={"csrf_token": "forged"}).status_code == 403
    assert web.client.post("/api/claim", headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert web.call(web.service.cases.case, 10).owner == ""
    token = web.csrf()
    response = web.client.post("/next", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["location"] == "/case/10"
    assert web.call(web.service.cases.case, 10).owner == "ann"


def test_transaction_fields_are_shown_as_text(web):
    script = "<script>alert(1)</script>"
    web.add_items(review_record(1, 20, 100.0, 0.9, model_version=script, reasons=(script, "LIGHT_SCORE:+1.0")))
    web.login("ann")
    token = web.csrf()
    web.client.post("/next", data={"csrf_token": token})
    for page in (web.client.get("/case/20"), web.client.get("/queue")):
        assert page.status_code == 200
        assert script not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    web.client.post("/case/20/verdict", data={"csrf_token": token, "verdict": "legit", "note": script})
    web.client.post("/logout", data={"csrf_token": token})
    web.login("root")
    audit = web.client.get("/audit")
    assert script not in audit.text and "&lt;script&gt;" in audit.text


def test_the_eleventh_bad_login_is_locked_even_with_the_right_password(web):
    for _ in range(10):
        assert web.login("ann", "wrong password").status_code == 401
    locked = web.login("ann", PASSWORD)
    assert locked.status_code == 429 and "locked" in locked.text
    assert "set-cookie" not in locked.headers
    # another user from the same address is locked too (per-address limit), through the API as well
    assert web.client.post("/api/login", json={"user": "root", "password": PASSWORD}).status_code == 429


def test_sessions_expire_and_log_out(web):
    assert web.login("ann").status_code == 303
    assert web.client.get("/queue").status_code == 200
    web.clock.now = T0 + web.settings.session_max_s + 1
    assert web.client.get("/queue").status_code == 303
    assert web.client.get("/api/stats").status_code == 401
    web.clock.now = T0
    web.login("ann")
    token = web.csrf()
    assert web.client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert web.client.get("/api/session").status_code == 401


def test_session_cookie_is_httponly_and_samesite(web):
    response = web.login("ann")
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=" in cookie
    key = [k for k in web.call(lambda: _keys(web, "session"))]
    assert len(key) == 1
    ttl = web.call(web.service.redis.ttl, key[0])
    assert 0 < ttl <= web.settings.session_idle_s
    page = web.client.get("/queue")
    assert "script-src 'self'" in page.headers["content-security-policy"]


async def _keys(web, kind):
    return [k async for k in web.service.redis.scan_iter(match=f"{web.prefix}:review:{kind}:*")]


@pytest.mark.parametrize("path, form", [
    ("/case/30/verdict", {"verdict": "maybe"}),
    ("/case/30/verdict", {"verdict": "fraud", "transaction_id": "abc"}),
    ("/case/30/verdict", {"verdict": "fraud", "note": "x" * 2001}),
    ("/case/30/verdict", {"verdict": "fraud", "extra": "1"}),
    ("/case/30/skip", {"why": "1"}),
])
def test_bad_form_input_gets_a_400_with_the_field_and_changes_nothing(web, path, form):
    web.add_items(review_record(1, 30, 100.0, 0.9))
    web.login("ann")
    token = web.csrf()
    web.client.post("/next", data={"csrf_token": token})
    before = web.call(web.service.redis.hgetall, web.service.cases.keys.case(30))
    response = web.client.post(path, data={"csrf_token": token, **form})
    assert response.status_code == 400
    field = next(iter(form)) if "why" not in form else "unexpected"
    assert field in response.text or "why" in response.text
    assert web.call(web.service.redis.hgetall, web.service.cases.keys.case(30)) == before
    assert web.call(web.service.redis.xlen, web.service.cases.keys.label_log) == 0


def test_bad_api_input_gets_a_400_json_error(web):
    web.add_items(review_record(1, 40, 100.0, 0.9))
    login = web.client.post("/api/login", json={"user": "ann", "password": PASSWORD})
    token = login.json()["csrf_token"]
    headers = {"X-CSRF-Token": token}
    assert web.client.post("/api/claim", headers=headers).json()["customer_id"] == 40
    bad = [
        web.client.post("/api/cases/40/verdict", headers=headers, content=b"{not json",
                        ) ,
        web.client.post("/api/cases/40/verdict", headers={**headers, "content-type": "application/json"},
                        content=b"{not json"),
        web.client.post("/api/cases/40/verdict", headers=headers, json={"verdict": "fraud", "transaction_id": -1}),
        web.client.post("/api/cases/40/verdict", headers=headers, json=["fraud"]),
        web.client.get("/api/cases?min_risk=2"),
        web.client.get("/api/cases?sort=random"),
    ]
    for response in bad:
        assert response.status_code == 400 and response.json()["error"], response.text
    assert "min_risk" in bad[4].json()["error"] and "sort" in bad[5].json()["error"]
    assert web.call(web.service.cases.case, 40).items == 1
    assert web.client.get("/api/cases/999").status_code == 404
    assert web.client.get("/case/abc").status_code == 404


def test_metrics_are_open_to_prometheus_unless_a_token_is_set(redis_url):
    with WebHarness(redis_url) as open_web:
        assert "fraudstream_review_pending_cases" in open_web.client.get("/metrics").text
    with WebHarness(redis_url, overrides={"metrics_token": "s3cret-token"}) as web:
        web.add_user("ann")
        assert web.client.get("/metrics").status_code == 401
        assert web.client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        scraped = web.client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
        assert scraped.status_code == 200 and "fraudstream_review_overdue_cases" in scraped.text
        web.login("ann")
        assert web.client.get("/metrics").status_code == 200
