"""Reads of the workbench's journals: the audit journal, the durable label log and the statistics.

The audit journal (Redis stream ``<p>:review:audit``) is append-only: scripts add entries in the same atomic call
as the change they record, and only retention removes the oldest.  Each entry: ``at`` (epoch s), ``actor``,
``action`` (verdict, block, unblock, escalate, reassign, user-add, user-remove, set-role), ``target`` (item:<id>,
case:<card>, card:<card>, user:<name>), ``before`` -> ``after`` and an optional ``note``.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from fraudstream.review_queue.settings import ReviewSettings
from fraudstream.stream.state.keys import ReviewKeys

AUDIT_FIELDS = ("id", "at", "actor", "action", "target", "before", "after", "note")
#: Entries read per XRANGE call when exporting.
READ_CHUNK = 1000


@dataclass(frozen=True)
class AuditEntry:
    id: str
    at: float
    actor: str
    action: str
    target: str
    before: str
    after: str
    note: str

    @classmethod
    def from_stream(cls, entry_id: str, f: dict[str, str]) -> AuditEntry:
        return cls(entry_id, float(f.get("at", 0)), f.get("actor", ""), f.get("action", ""), f.get("target", ""),
                   f.get("before", ""), f.get("after", ""), f.get("note", ""))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def label_from_stream(entry_id: str, f: dict[str, str]) -> dict[str, Any]:
    """One label-log entry as typed values (ids int, amounts and times float, fraud bool)."""
    def num(name: str) -> float | None:
        value = f.get(name, "")
        return float(value) if value not in ("", None) else None

    return {
        "id": entry_id, "transaction_id": int(f["transaction_id"]),
        "customer_id": int(f["customer_id"]) if f.get("customer_id") else None,
        "terminal_id": int(f["terminal_id"]) if f.get("terminal_id") else None,
        "amount": num("amount"), "tx_timestamp": num("tx_timestamp"), "fraud": f.get("fraud") == "1",
        "known_at": num("known_at"), "source": f.get("source", ""), "analyst": f.get("analyst", ""),
        "note": f.get("note", ""), "model_version": f.get("model_version", ""), "publish": f.get("publish") == "1",
    }


class Journal:
    """Audit journal, label log and statistics reads (``redis.asyncio``, ``decode_responses=True``; ``raw_redis``,
    ``decode_responses=False``, reads the worker's binary review-case log for the stats, which leave it out without
    one)."""

    def __init__(self, redis: Any, settings: ReviewSettings, clock: Callable[[], float] = time.time,
                 raw_redis: Any = None) -> None:
        self.redis = redis
        self.raw_redis = raw_redis
        self.settings = settings
        self.keys = ReviewKeys(settings.redis_prefix)
        self.clock = clock

    async def audit(self, limit: int = 200, before: str = "+") -> list[AuditEntry]:
        """Newest entries first (``before``: an entry id to page back from, exclusive)."""
        end = before if before == "+" else f"({before}"
        rows = await self.redis.xrevrange(self.keys.audit, max=end, min="-", count=limit)
        return [AuditEntry.from_stream(i, f) for i, f in rows]

    async def _all(self, key: str) -> list[tuple[str, dict[str, str]]]:
        out: list[tuple[str, dict[str, str]]] = []
        start = "-"
        while True:
            rows = await self.redis.xrange(key, min=start, max="+", count=READ_CHUNK)
            out.extend(rows)
            if len(rows) < READ_CHUNK:
                return out
            start = f"({rows[-1][0]}"

    async def audit_csv(self) -> str:
        """The whole journal (oldest first) as CSV."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(AUDIT_FIELDS)
        for entry_id, f in await self._all(self.keys.audit):
            e = AuditEntry.from_stream(entry_id, f)
            writer.writerow([getattr(e, name) for name in AUDIT_FIELDS])
        return buf.getvalue()

    async def labels(self) -> list[dict[str, Any]]:
        """Every label in the log, oldest first."""
        return [label_from_stream(i, f) for i, f in await self._all(self.keys.label_log)]

    async def stats(self, store: Any) -> dict[str, Any]:
        """Cases waiting, oldest age (s), SLA breaches, verdicts today per analyst, share fraud, the measured
        precision of REVIEW (share of analyst verdicts that were fraud) per model version, and the review budget
        the workers run with (None: no worker said) with the cases opened today (UTC; transactions' event time)."""
        from fraudstream.detectors.cascade.review_budget import event_day
        from fraudstream.review_queue.cases import day_of
        from fraudstream.stream.state.redis_store import decode_case_log

        now = self.clock()
        keys = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.index("age"))
            pipe.zrange(keys.index("age"), 0, 0, withscores=True)
            pipe.zcount(keys.index("age"), "-inf", now - self.settings.sla_s)
            pipe.hgetall(keys.verdicts_day(day_of(now)))
            pipe.hgetall(keys.precision)
            pipe.zcard(keys.leases)
            pipe.zcard(keys.escalated)
            pipe.zcard(keys.blocked)
            pipe.zcard(keys.inbox)
            pipe.get(keys.review_budget)
            waiting, oldest, overdue, today, precision, leased, escalated, blocked, inbox, budget = \
                await pipe.execute()
        opened_today = None
        if self.raw_redis is not None:
            opened_today = decode_case_log(await self.raw_redis.get(keys.review_cases_day(event_day(now)))).opened
        per_analyst: dict[str, dict[str, int]] = {}
        for name, count in today.items():
            analyst, _, verdict = name.rpartition("|")
            per_analyst.setdefault(analyst, {"fraud": 0, "legit": 0})[verdict] = int(count)
        fraud_today = sum(v["fraud"] for v in per_analyst.values())
        all_today = fraud_today + sum(v["legit"] for v in per_analyst.values())
        by_model: dict[str, dict[str, Any]] = {}
        for name, count in precision.items():
            model, _, verdict = name.rpartition("|")
            by_model.setdefault(model, {"fraud": 0, "legit": 0})[verdict] = int(count)
        for row in by_model.values():
            n = row["fraud"] + row["legit"]
            row["precision"] = row["fraud"] / n if n else None
        return {
            "cases_waiting": int(waiting), "oldest_case_age_s": (now - oldest[0][1]) if oldest else 0.0,
            "overdue_cases": int(overdue), "leased_cases": int(leased), "escalated_cases": int(escalated),
            "blocked_cards": int(blocked), "items_not_ingested": int(inbox),
            "verdicts_today": per_analyst, "share_fraud_today": (fraud_today / all_today) if all_today else None,
            "precision": by_model,
            "review_budget": int(budget) if budget is not None else None,
            "review_cases_opened_today": opened_today,
        }
