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


def test_case_page_shows_every_stage_score_the_cards_timeline_terminals_and_new_pairs_from_the_online_state(
        redis_url):
    from fraudstream.detectors.features.online import CustomerHistory, TerminalHistory
    from fraudstream.review_queue.casefile import DAY_S
    from fraudstream.stream.state.keys import Keyspace

    with WebHarness(redis_url) as web:
        web.add_user("ann")
        t = 1_525_000_001.0  # the first item's event time (review_record: 1_525_000_000 + transaction id)
        web.add_items(review_record(1, 40, 80.0, 0.9, terminal_id=7), review_record(2, 40, 20.0, 0.6, terminal_id=9))
        card = CustomerHistory(timestamps=[t - 40 * DAY_S, t - 10 * DAY_S, t - DAY_S, t, t + 1],
                               transaction_ids=[100, 101, 102, 1, 2], amounts=[5.0, 6.0, 7.0, 80.0, 20.0],
                               terminal_ids=[9, 9, 8, 7, 9])
        terminal = TerminalHistory(timestamps=[t - 31 * DAY_S, t - 10 * DAY_S, t - DAY_S],
                                   transaction_ids=[900, 101, 901])
        terminal.set_label(101, t - 10 * DAY_S, True, t - 8 * DAY_S)
        keys = Keyspace(web.prefix)

        async def seed():
            await web.service.raw_redis.set(keys.customer(40), card.to_bytes())
            await web.service.raw_redis.set(keys.terminal(9), terminal.to_bytes())

        web.call(seed)
        web.login("ann")
        page = web.client.get("/case/40").text
        rows = {tid: page[page.index(f'data-transaction="{tid}"'):].split("</tr>", 1)[0] for tid in (1, 2)}
        for score in ("0.400", "0.900", "0.500"):  # light, anomaly, heavy
            assert score in rows[1] and score in rows[2]
        assert "<strong>new</strong>" in rows[1] and ">known<" in rows[2]  # terminal 7 is new to the card, 9 is not
        assert "LIGHT_SCORE +1.500" in rows[1] and 'class="bar"' in rows[1]
        assert "(4 transactions; red: under review)" in page  # 30 days: the one 40 days back is left out
        assert page.count("<circle") == 4 and page.count('fill="#c0392b"') == 2
        terminals = page[page.index('id="terminals"'):].split("</table>", 1)[0]
        assert '<td>9</td><td class="num">2</td><td class="num">1</td><td class="num">50.0%</td>' in terminals
        assert '<td>7</td><td class="num">0</td><td class="num">0</td><td class="num">-</td>' in terminals


def test_the_skip_and_escalate_forms_of_the_keys_hand_the_case_on_and_open_the_next(web):
    web.login("ann")
    token = web.csrf()
    assert web.client.post("/next", data={"csrf_token": token}).headers["location"] == "/case/10"
    page = web.client.get("/case/10").text
    assert 'id="form-skip" method="post" action="/case/10/skip"' in page  # the forms app.js submits on s / e
    assert 'id="form-escalate" method="post" action="/case/10/escalate"' in page
    skipped = web.client.post("/case/10/skip", data={"csrf_token": token})
    assert skipped.headers["location"] == "/case/11"  # the next case opens; the skipped one is not offered again
    assert web.call(web.service.cases.case, 10).owner == ""
    escalated = web.client.post("/case/11/escalate", data={"csrf_token": token})
    assert escalated.headers["location"] == "/case/12"
    case = web.call(web.service.cases.case, 11)
    assert case.escalated and case.owner == ""
    assert web.call(web.service.journal.audit)[0].action == "escalate"


def test_the_stats_show_the_cases_the_workers_opened_today_against_their_review_budget(web):
    from fraudstream.detectors.cascade.review_budget import closed_entry, event_day, opened_entry
    from fraudstream.stream.state.redis_store import encode_case_log

    web.login("ann")
    assert 'id="budget">0 / no budget<' in web.client.get("/stats").text  # no worker said: no budget
    keys, now = web.service.journal.keys, web.clock()
    log = [opened_entry(10, now - 60), opened_entry(11, now - 50), closed_entry(10, now - 40),
           opened_entry(10, now - 30)]  # card 10 came back after its verdict: three cases
    web.call(web.service.raw_redis.set, keys.review_cases_day(event_day(now)), encode_case_log(log))
    web.call(web.service.redis.set, keys.review_budget, "100")
    assert 'id="budget">3 / 100<' in web.client.get("/stats").text
    stats = web.client.get("/api/stats").json()
    assert stats["review_budget"] == 100 and stats["review_cases_opened_today"] == 3
