"""The review budget in the worker core, on each state store (a real Redis: embedded redis-server; in memory): per
UTC event day only the first ``cases_per_day`` cards sent to REVIEW without an open case (theirs or one from the
look-back days) keep it, across batches and chunks; the rest is ALLOW with the budget's reason; the cases are
stored once (chargebacks close none: only an analyst's verdict does), and a re-delivered batch opens none."""

import asyncio

import numpy as np
import pytest

from fraudstream.detectors.cascade.review_budget import CASE_LOOKBACK_DAYS, REASON_REVIEW_BUDGET, event_days
from fraudstream.detectors.cascade.types import Decision
from fraudstream.detectors.schema import datetime_to_epoch_seconds
from fraudstream.stream.core.batch import BatchPipeline
from fraudstream.stream.metrics import WorkerMetrics
from fraudstream.stream.model_watch import ActiveModel
from fraudstream.stream.state.base import BatchReads
from fraudstream.stream.state.memory import InMemoryStateStore
from fraudstream.stream.state.redis_store import CASE_LOG_DTYPE
from fraudstream.stream.types import DecisionRecord
from tests.unit.stream.test_pipeline_batches import LABEL_TOPIC, TX_TOPIC, events_of, expected_decisions
from tests.unit.stream.test_pipeline_chunks import decided, rows_of, store_of

BUDGET = 10
BATCH = 400


def kept_reviews(rows, unbudgeted, budget):
    """Transaction ids whose REVIEW stands, the (day, card) cases opened and how many REVIEWs joined a case of an
    earlier day: in event-time order, a card whose case
    is open (opened on the day or on the look-back days before; no analyst closes one here) joins it, another
    opens one while the day has opened fewer than ``budget``."""
    review = rows[[unbudgeted[int(t)][0] == Decision.REVIEW for t in rows["TRANSACTION_ID"]]]
    days = event_days(datetime_to_epoch_seconds(review["TX_DATETIME"])).tolist()
    opened_on: dict[int, int] = {}
    per_day: dict[int, int] = {}
    kept, opened, carried = set(), set(), 0
    for tx, day, card in zip(review["TRANSACTION_ID"].tolist(), days, review["CUSTOMER_ID"].tolist()):
        if card in opened_on and day - opened_on[card] <= CASE_LOOKBACK_DAYS:
            kept.add(tx)
            carried += day > opened_on[card]
        elif per_day.get(day, 0) < budget:
            per_day[day] = per_day.get(day, 0) + 1
            opened_on[card] = day
            kept.add(tx)
            opened.add((day, card))
    return kept, opened, carried


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_the_first_cards_of_each_day_keep_their_review_and_the_rest_is_allowed(tiny_bundle, redis_server, kind):
    model = ActiveModel.load(tiny_bundle.root)
    rows = rows_of(tiny_bundle)
    events = events_of(rows, with_labels=True, delay_s=model.bundle.feature_config.label_delay_s)
    unbudgeted = expected_decisions(model, rows)
    kept, opened, carried = kept_reviews(rows, unbudgeted, BUDGET)
    assert carried > 0, "no REVIEW joins a case of an earlier day: the test data cannot show the look-back"
    days = sorted({day for day, _ in opened})

    async def scenario():
        store = store_of(kind, redis_server)
        pipeline = BatchPipeline(store, lambda: model, TX_TOPIC, LABEL_TOPIC, clock=lambda: 1.7e9, chunk_size=150,
                                 review_cases_per_day=BUDGET)
        outcomes = [await pipeline.process(events[s:s + BATCH]) for s in range(0, len(events), BATCH)]
        again = await pipeline.process(events[:BATCH])  # re-delivered: answered from the store
        state = await store.read_batch(BatchReads([], [], [], [], review_days=days))
        logs = ({day: list(entries) for day, entries in store.review_cases.items()}
                if isinstance(store, InMemoryStateStore) else
                {day: np.frombuffer(await store.redis.get(store.keys.review_cases_day(day)) or b"",
                                    CASE_LOG_DTYPE).tolist() for day in days})
        if not isinstance(store, InMemoryStateStore):
            await store.close()
        return outcomes, again, state.review_cases, logs

    outcomes, again, stored, logs = asyncio.run(scenario())
    records = [DecisionRecord.from_json(raw) for raw in decided(outcomes).values()]
    assert len(records) == len(rows)
    over = 0
    for record in records:
        before = Decision(unbudgeted[record.transaction_id][0])
        if before == Decision.REVIEW and record.transaction_id not in kept:
            assert record.decision == "ALLOW" and record.reasons[0] == REASON_REVIEW_BUDGET, record
            over += 1
        else:
            assert record.decision == before.name and REASON_REVIEW_BUDGET not in record.reasons, record
    assert over > 0, "the budget never bit: the test data sends too few cards to review"
    assert sum(o.reviews_over_budget for o in outcomes) == over
    assert sum(o.review_items for o in outcomes) == sum(r.decision == "REVIEW" for r in records)
    assert again.new_decisions == [] and again.reviews_over_budget == 0
    by_day: dict[int, set[int]] = {}
    for day, card in opened:
        by_day.setdefault(day, set()).add(card)
    assert {day: cases.opened for day, cases in stored.items()} == {day: len(c) for day, c in by_day.items()}
    assert all(cases.opened <= BUDGET for cases in stored.values())
    metrics = WorkerMetrics()
    for outcome in outcomes:
        metrics.count_outcome(outcome)
        for day, count in outcome.review_cases_opened.items():  # look-back days read without a case: 0
            assert count <= (stored[day].opened if day in stored else 0)
    assert metrics.review_cases_opened._value.get() == stored[max(stored)].opened  # the latest day's
    assert metrics.reviews_over_budget._value.get() == over
    assert {day: sorted(code for code, _ in log) for day, log in logs.items()} == \
        {day: sorted(cards) for day, cards in by_day.items()}  # each case stored once, none closed
