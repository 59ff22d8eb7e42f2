"""Cases per card against a real Redis: ordering, leases, idempotent verdicts, audit, block list, chargebacks,
retention."""

from __future__ import annotations

import pytest

from fraudstream.review_queue.cases import QueueFilter, ReviewError, priority_at, priority_key
from fraudstream.review_queue.journal import Journal

from .conftest import T0, Harness, review_record


def test_items_of_one_card_form_one_case_with_expected_loss(harness):
    harness.add_items(review_record(1, 10, 100.0, 0.5), review_record(2, 10, 50.0, 0.9, decided_at=T0 - 60),
                      review_record(3, 11, 10.0, 0.7))
    case = harness.run(harness.store.case(10))
    assert case.items == 2 and case.status == "open"
    assert case.amount == pytest.approx(150.0)
    assert case.expected_loss == pytest.approx(100 * 0.5 + 50 * 0.9)
    assert case.top_risk == pytest.approx(0.9)
    assert case.opened_at == T0 - 60 and case.sla_due == T0 - 60 + harness.settings.sla_s
    assert case.stages == ("HEAVY",) and case.models == ("m1",)
    cases, total = harness.run(harness.store.queue(QueueFilter()))
    assert total == 2 and [c.customer_id for c in cases] == [10, 11]
    assert harness.run(harness.redis.zcard(harness.store.keys.inbox)) == 0


def test_older_cases_rise_so_nothing_starves(harness):
    hours = harness.settings.age_doubling_s
    # expected loss 40 opened 3 doubling periods ago (x8 = 320) beats expected loss 100 opened now
    harness.add_items(review_record(1, 20, 100.0, 1.0), review_record(2, 21, 40.0, 1.0, decided_at=T0 - 3 * hours))
    cases, _ = harness.run(harness.store.queue(QueueFilter()))
    assert [c.customer_id for c in cases] == [21, 20]
    assert cases[0].priority == pytest.approx(priority_at(40.0, T0 - 3 * hours, T0, hours))
    assert priority_key(40.0, T0 - 3 * hours, hours) > priority_key(100.0, T0, hours)
    aged, _ = harness.run(harness.store.queue(QueueFilter(sort="age")))
    assert [c.customer_id for c in aged] == [21, 20]
    harness.clock.now = T0 + harness.settings.sla_s - 3 * hours + 1
    assert cases[0].overdue(harness.clock.now) and not cases[1].overdue(harness.clock.now)


def test_queue_filters_by_stage_model_and_risk(harness):
    harness.add_items(review_record(1, 30, 10.0, 0.95, model_version="m2"),
                      review_record(2, 31, 10.0, 0.6, heavy=None, reasons=("rule:burst",)),
                      review_record(3, 32, 10.0, 0.3))
    def ids(**kw):
        return [c.customer_id for c in harness.run(harness.store.queue(QueueFilter(**kw)))[0]]
    assert ids(stage="RULES") == [31]
    assert ids(model_version="m2") == [30]
    assert sorted(ids(min_risk=0.5)) == [30, 31]
    with pytest.raises(ValueError, match="sort"):
        QueueFilter(sort="nope")


def test_two_analysts_never_hold_the_same_case_and_an_expired_lease_returns_it(harness):
    harness.add_items(review_record(1, 40, 100.0, 0.9), review_record(2, 41, 10.0, 0.9))
    store = harness.store
    assert harness.run(store.claim_next("ann")) == (40, True)
    assert harness.run(store.claim_next("bob")) == (41, True)
    assert harness.run(store.claim_next("ann")) == (40, False)  # held while the lease lasts
    assert harness.run(store.claim_next("cat")) is None
    harness.clock.now = T0 + harness.settings.lease_s + 1
    assert harness.run(store.claim_next("cat")) == (40, True)
    case = harness.run(store.case(40))
    assert case.owner == "cat" and case.lease_until == pytest.approx(harness.clock.now + harness.settings.lease_s)
    with pytest.raises(ReviewError) as err:
        harness.run(store.verdict("ann", 40, "fraud"))
    assert err.value.code == "not_holder"


def test_release_skip_escalate_and_reassign(harness):
    harness.add_items(review_record(1, 50, 100.0, 0.9), review_record(2, 51, 10.0, 0.9))
    store = harness.store
    assert harness.run(store.claim_next("ann"))[0] == 50
    harness.run(store.handover("ann", 50, "skip"))
    assert harness.run(store.claim_next("ann"))[0] == 51  # the skipped case is not offered to ann again
    assert harness.run(store.claim_next("bob"))[0] == 50  # but to others
    harness.run(store.handover("bob", 50, "release"))
    harness.run(store.handover("ann", 51, "escalate"))
    assert harness.run(store.claim_next("bob"))[0] == 50  # an escalated case goes to admins only
    harness.run(store.handover("bob", 50, "release"))
    assert harness.run(store.claim_next("root", admin=True))[0] == 51
    with pytest.raises(ReviewError) as err:
        harness.run(store.handover("bob", 50, "reassign", target="ann"))
    assert err.value.code == "not_admin"
    harness.run(store.handover("root", 50, "reassign", admin=True, target="ann"))
    assert harness.run(store.case(50)).owner == "ann"
    assert harness.run(store.claim_next("ann")) == (50, False)
    actions = [e.action for e in harness.run(Journal(harness.redis, harness.settings, clock=harness.clock).audit())]
    assert actions == ["reassign", "escalate"]  # newest first


def test_verdicts_are_idempotent_audited_labelled_and_block_the_card(harness):
    harness.add_items(review_record(1, 60, 100.0, 0.9, terminal_id=5), review_record(2, 60, 20.0, 0.4))
    store, journal = harness.store, Journal(harness.redis, harness.settings, clock=harness.clock)
    harness.run(store.claim_next("ann"))
    first = harness.run(store.verdict("ann", 60, "legit", note="known customer", transaction_id=2))
    assert (first.code, first.resolved, first.case_open) == ("ok", 1, True)
    again = harness.run(store.verdict("ann", 60, "legit", transaction_id=2))
    assert (again.code, again.resolved) == ("unchanged", 0)
    with pytest.raises(ReviewError) as err:
        harness.run(store.verdict("ann", 60, "fraud", transaction_id=2))
    assert err.value.code == "conflict"
    assert not harness.run(store.is_blocked(60))
    whole = harness.run(store.verdict("ann", 60, "fraud", note="stolen"))
    assert (whole.code, whole.resolved, whole.case_open) == ("ok", 1, False)
    repeat = harness.run(store.verdict("ann", 60, "fraud", note="stolen"))
    assert (repeat.code, repeat.resolved) == ("unchanged", 0)
    assert harness.run(store.is_blocked(60))
    case = harness.run(store.case(60))
    assert case.status == "resolved" and case.items == 0
    assert harness.run(store.queue(QueueFilter()))[1] == 0
    item = harness.run(store.items([1]))[0]
    assert (item["status"], item["verdict"], item["analyst"], item["source"]) == ("resolved", "fraud", "ann", "analyst")
    audit = harness.run(journal.audit())
    assert [(e.action, e.target, e.before, e.after) for e in reversed(audit)] == [
        ("verdict", "item:2", "pending", "legit"), ("verdict", "item:1", "pending", "fraud"),
        ("block", "card:60", "allowed", "blocked")]
    assert audit[-1].actor == "ann" and audit[-1].note == "known customer"
    labels = harness.run(journal.labels())
    assert [(lab["transaction_id"], lab["fraud"], lab["source"], lab["analyst"]) for lab in labels] == [
        (2, False, "analyst", "ann"), (1, True, "analyst", "ann")]
    assert labels[1]["known_at"] == T0 and labels[1]["terminal_id"] == 5 and labels[0]["note"] == "known customer"
    stats = harness.run(journal.stats(store))
    assert stats["verdicts_today"] == {"ann": {"fraud": 1, "legit": 1}}
    assert stats["precision"] == {"m1": {"fraud": 1, "legit": 1, "precision": 0.5}}
    # the admin lifts the block, audited
    assert harness.run(store.unblock("root", 60, note="customer confirmed"))
    assert not harness.run(store.is_blocked(60)) and not harness.run(store.unblock("root", 60))
    assert harness.run(journal.audit())[0].action == "unblock"


def test_a_chargeback_resolves_pending_items_so_no_one_works_a_settled_case(harness):
    harness.add_items(review_record(1, 70, 100.0, 0.9), review_record(2, 70, 20.0, 0.4),
                      review_record(3, 71, 20.0, 0.4))
    store = harness.store
    assert harness.run(store.resolve_chargebacks([(1, True), (99, True)])) == 1
    case = harness.run(store.case(70))
    assert case.items == 1 and case.expected_loss == pytest.approx(8.0)
    assert harness.run(store.resolve_chargebacks([(2, False), (1, True)])) == 1
    assert harness.run(store.case(70)).status == "resolved"
    assert harness.run(store.claim_next("ann"))[0] == 71
    item = harness.run(store.items([1]))[0]
    assert (item["source"], item["verdict"]) == ("chargeback", "fraud")
    assert not harness.run(store.is_blocked(70))
    labels = harness.run(Journal(harness.redis, harness.settings, clock=harness.clock).labels())
    assert {(lab["transaction_id"], lab["source"]) for lab in labels} == {(1, "chargeback"), (2, "chargeback")}


def test_resolved_items_and_journals_are_kept_for_the_retention_period_only(harness):
    harness.add_items(review_record(1, 80, 100.0, 0.9))
    store = harness.store
    harness.run(store.claim_next("ann"))
    harness.run(store.verdict("ann", 80, "legit"))
    retention = harness.settings.retention_s
    for key in (store.keys.item(1), store.keys.case(80)):
        assert 0 < harness.run(harness.redis.ttl(key)) <= retention
    assert harness.run(harness.redis.xlen(store.keys.audit)) == 1
    harness.clock.now = T0 + retention + 10 ** 6  # far past every entry (stream ids are Redis' own clock)
    harness.run(store.trim())
    assert harness.run(harness.redis.xlen(store.keys.audit)) == 0
    assert harness.run(harness.redis.xlen(store.keys.label_log)) == 0


def test_claim_next_passes_over_skips_without_scanning_the_whole_queue(harness):
    harness.add_items(*[review_record(i, 1000 + i, float(i), 0.5) for i in range(1, 301)])
    store = harness.store
    assert harness.run(store.claim_next("ann"))[0] == 1300  # the largest expected loss
    cases, total = harness.run(store.queue(QueueFilter(sort="amount"), offset=10, limit=5))
    assert total == 300 and [c.customer_id for c in cases] == [1290, 1289, 1288, 1287, 1286]


def test_claiming_a_chosen_case_gives_up_the_one_held_and_never_takes_anothers(harness):
    harness.add_items(review_record(1, 90, 100.0, 0.9), review_record(2, 91, 10.0, 0.9))
    store = harness.store
    assert harness.run(store.claim_next("ann"))[0] == 90
    with pytest.raises(ReviewError) as err:
        harness.run(store.claim("bob", 90))
    assert err.value.code == "taken"
    assert harness.run(store.claim("ann", 91)) is True
    assert harness.run(store.case(90)).owner == "" and harness.run(store.case(91)).owner == "ann"
    assert harness.run(store.claim_next("bob"))[0] == 90
    with pytest.raises(ReviewError) as err:
        harness.run(store.claim("bob", 12345))
    assert err.value.code == "no_case"


def test_resolved_cases_items_journals_and_blocks_go_once_the_retention_period_has_passed(redis_url):
    """On Redis' own clock: kept while younger than the retention period, gone after; open work never expires."""
    import time

    from fraudstream.review_queue.cases import CaseStore, day_of

    h = Harness(redis_url, settings_overrides={"retention_s": 2, "block_ttl_s": 2})
    try:
        store = CaseStore(h.redis, h.settings, clock=time.time)
        h.add_items(review_record(1, 80, 100.0, 0.9), review_record(2, 80, 50.0, 0.8), review_record(3, 81, 9.0, 0.5))
        h.run(store.claim("ann", 80))
        assert h.run(store.verdict("ann", 80, "fraud", note="stolen")).resolved == 2
        k = store.keys
        resolved = [k.item(1), k.item(2), k.case(80), k.verdicts_day(day_of(time.time())), k.block(80)]
        journals = {k.audit: 3, k.label_log: 2}  # two verdicts and the block; two labels

        def count(key):
            return h.run(h.redis.xlen(key))

        h.run(store.trim())
        assert all(h.run(h.redis.exists(key)) for key in resolved)
        assert {key: count(key) for key in journals} == journals
        assert h.run(h.redis.zcard(k.blocked)) == 1
        time.sleep(3.0)
        h.run(store.trim())
        assert not any(h.run(h.redis.exists(key)) for key in resolved)
        assert {key: count(key) for key in journals} == {key: 0 for key in journals}
        assert h.run(h.redis.zcard(k.blocked)) == 0 and not h.run(store.is_blocked(80))
        # the pending item and its open case stay until someone gives a verdict
        assert h.run(store.case(81)).status == "open" and h.run(h.redis.ttl(k.case(81))) == -1
        assert h.run(store.items([3]))[0]["status"] == "pending" and h.run(h.redis.ttl(k.item(3))) == -1
    finally:
        h.close()
