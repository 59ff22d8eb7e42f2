"""The analyst's flow through the page and the JSON API against a real Redis: claim, verdict, next case, stats,
users, block list, metrics."""

from __future__ import annotations

import pytest

from .conftest import review_record
from .webclient import PASSWORD, WebHarness


@pytest.fixture
def web(redis_url):
    with WebHarness(redis_url) as h:
        h.add_user("ann")
        h.add_user("root", "admin")
        h.add_items(review_record(1, 10, 500.0, 0.9, terminal_id=3), review_record(2, 10, 20.0, 0.5),
                    review_record(3, 11, 100.0, 0.8), review_record(4, 12, 5.0, 0.6))
        yield h


def test_verdict_on_the_page_opens_the_next_case_and_is_recorded(web):
    web.login("ann")
    token = web.csrf()
    queue = web.client.get("/queue")
    assert 'id="open-cases">3<' in queue.text
    assert queue.text.index('data-card="10"') < queue.text.index('data-card="11"') < queue.text.index('data-card="12"')
    first = web.client.post("/next", data={"csrf_token": token})
    assert first.headers["location"] == "/case/10"
    page = web.client.get("/case/10")
    assert 'id="form-fraud"' in page.text and 'data-transaction="1"' in page.text and "LIGHT_SCORE" in page.text
    done = web.client.post("/case/10/verdict", data={"csrf_token": token, "verdict": "fraud", "note": "stolen card"})
    assert done.status_code == 303 and done.headers["location"] == "/case/11"
    again = web.client.post("/case/10/verdict", data={"csrf_token": token, "verdict": "fraud"})
    assert again.headers["location"] == "/case/11"  # a double submit changes nothing and lands on the case held
    labels = web.call(web.service.journal.labels)
    assert sorted(lab["transaction_id"] for lab in labels) == [1, 2]
    assert all(lab["fraud"] and lab["analyst"] == "ann" and lab["note"] == "stolen card" for lab in labels)
    assert web.call(web.service.cases.is_blocked, 10)
    metrics = web.client.get("/metrics").text
    assert 'fraudstream_review_verdicts_total{analyst="ann",verdict="fraud"} 2.0' in metrics
    assert "fraudstream_review_pending_cases 2.0" in metrics
    stats = web.client.get("/stats").text
    assert "<td>ann</td><td class=\"num\">2</td>" in stats
    assert web.client.get("/blocklist").text.count("<td>10</td>") == 1


def test_json_api_lists_claims_and_gives_verdicts_with_the_same_auth(web):
    login = web.client.post("/api/login", json={"user": "ann", "password": PASSWORD})
    assert login.status_code == 200 and login.json()["role"] == "analyst"
    headers = {"X-CSRF-Token": login.json()["csrf_token"]}
    listing = web.client.get("/api/cases?sort=amount").json()
    assert listing["total"] == 3 and [c["customer_id"] for c in listing["cases"]] == [10, 11, 12]
    assert web.client.get("/api/cases?stage=HEAVY&min_risk=0.85").json()["cases"][0]["customer_id"] == 10
    claimed = web.client.post("/api/claim", headers=headers).json()
    assert claimed == {"customer_id": 10, "new": True}
    one = web.client.post("/api/cases/10/verdict", headers=headers, json={"verdict": "legit", "transaction_id": 2})
    assert one.json() == {"result": "ok", "resolved": 1, "case_open": True}
    case = web.client.get("/api/cases/10").json()
    assert [i["transaction_id"] for i in case["items"]] == ["1"] and case["blocked"] is False
    skip = web.client.post("/api/cases/10/skip", headers=headers)
    assert skip.json()["action"] == "skip"
    assert web.client.post("/api/claim", headers=headers).json()["customer_id"] == 11
    assert web.client.post("/api/cases/10/verdict", headers=headers, json={"verdict": "fraud"}).status_code == 409
    assert web.client.post("/api/cases/11/escalate", headers=headers).status_code == 200
    stats = web.client.get("/api/stats").json()
    assert stats["cases_waiting"] == 3 and stats["escalated_cases"] == 1
    assert stats["verdicts_today"] == {"ann": {"fraud": 0, "legit": 1}}
    assert web.client.get("/api/audit").status_code == 403


def test_admin_manages_users_lifts_blocks_and_reassigns(web):
    web.login("root")
    token = web.csrf()
    added = web.client.post("/users", data={"csrf_token": token, "name": "bob", "role": "analyst"})
    assert added.status_code == 200 and 'id="generated-password"' in added.text
    assert web.call(web.service.users.get, "bob").role == "analyst"
    web.client.post("/users/bob/role", data={"csrf_token": token, "role": "admin"})
    assert web.call(web.service.users.get, "bob").role == "admin"
    assert web.client.post("/users/bob/role", data={"csrf_token": token, "role": "god"}).status_code == 400
    assert web.client.post("/case/12/reassign", data={"csrf_token": token, "analyst": "nobody"}).status_code == 400
    assert web.client.post("/case/12/reassign", data={"csrf_token": token, "analyst": "ann"}).status_code == 303
    assert web.call(web.service.cases.case, 12).owner == "ann"
    web.client.post("/next", data={"csrf_token": token})
    held = web.call(web.service.redis.get, web.service.cases.keys.holder("root"))
    web.client.post(f"/case/{held}/verdict", data={"csrf_token": token, "verdict": "fraud"})
    assert web.call(web.service.cases.is_blocked, int(held))
    lifted = web.client.post(f"/blocklist/{held}/lift", data={"csrf_token": token, "note": "customer called"})
    assert lifted.status_code == 303 and not web.call(web.service.cases.is_blocked, int(held))
    web.client.post("/users/bob/remove", data={"csrf_token": token})
    assert web.call(web.service.users.get, "bob") is None
    audit = web.client.get("/audit").text
    for action in ("user-add", "set-role", "reassign", "verdict", "block", "unblock", "user-remove"):
        assert f"<td>{action}</td>" in audit
