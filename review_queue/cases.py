"""Cases per card over the worker's REVIEW items: ingest, queue listing, claim-next leases, verdicts.

A case is a card (customer id): every pending REVIEW item of the card belongs to its one open case.  Cases are
ordered by expected loss (sum of risk x amount of the pending items) raised with age: the priority at time
``t`` is ``expected_loss * 2 ** ((t - opened_at) / age_doubling_s)``, so the order between two cases never
changes with time and one sorted-set score (:func:`priority_key`) holds it.  Claim-next is then a range read on
that sorted set, O(log n) in the pending cases (plus the few skipped cases it passes over).

Every operation is one Lua script (:mod:`fraudstream.stream.state.review_scripts`), so two analysts never get the
same case and a verdict, its audit entry, its label and the block-list entry are written together or not at all.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from fraudstream.review_queue.settings import ReviewSettings
from fraudstream.stream.state import review_scripts as scripts
from fraudstream.stream.state.keys import SORTS, ReviewKeys

VERDICTS = ("fraud", "legit")
HANDOVER_MODES = ("release", "skip", "escalate", "reassign")
#: Inbox items moved per ingest script call.
INGEST_CHUNK = 500
#: Largest displayed priority (the formula grows without bound for a very old case).
MAX_PRIORITY = 1e12
MS_PER_S = 1000


class ReviewError(Exception):
    """An operation the store refused; ``code`` is machine-readable, ``status`` the HTTP status it maps to."""

    MESSAGES = {
        "no_case": (404, "no open case for this card"),
        "not_holder": (409, "the case is not leased to you (claim it first)"),
        "not_admin": (403, "this needs the admin role"),
        "not_in_case": (404, "no such item in this case"),
        "conflict": (409, "the item already has a different verdict"),
        "taken": (409, "the case is leased to another analyst"),
    }

    def __init__(self, code: str, message: str | None = None) -> None:
        self.code = code
        self.status, default = self.MESSAGES.get(code, (400, code))
        super().__init__(message or default)


def priority_key(expected_loss: float, opened_at: float, age_doubling_s: float) -> float:
    """Time-invariant sorted-set score of a case: log2 of its priority minus the part every case shares."""
    return math.log2(max(expected_loss, 0.01)) - opened_at / age_doubling_s


def priority_at(expected_loss: float, opened_at: float, now: float, age_doubling_s: float) -> float:
    """The case's priority at ``now``: expected loss doubled every ``age_doubling_s`` of age."""
    exponent = min((now - opened_at) / age_doubling_s, 40.0)
    return float(min(max(expected_loss, 0.0) * 2.0 ** exponent, MAX_PRIORITY))


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d")


def _float(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True)
class CaseSummary:
    """One row of the queue."""

    customer_id: int
    opened_at: float
    sla_due: float
    items: int
    amount: float
    expected_loss: float
    top_risk: float
    top_reasons: tuple[str, ...]
    stages: tuple[str, ...]
    models: tuple[str, ...]
    owner: str
    lease_until: float | None
    escalated: bool
    status: str
    priority: float = 0.0

    def overdue(self, now: float) -> bool:
        return self.status == "open" and now > self.sla_due

    def to_dict(self, now: float) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out.update(top_reasons=list(self.top_reasons), stages=list(self.stages), models=list(self.models),
                   age_s=max(0.0, now - self.opened_at), overdue=self.overdue(now))
        return out

    @classmethod
    def from_hash(cls, h: dict[str, str], now: float, age_doubling_s: float) -> CaseSummary:
        opened = _float(h.get("opened_at"), now)
        el = _float(h.get("expected_loss"))
        try:
            reasons = tuple(json.loads(h.get("top_reasons") or "[]"))
        except ValueError:
            reasons = ()
        lease = h.get("lease_until") or ""
        return cls(
            customer_id=int(h["customer_id"]), opened_at=opened, sla_due=_float(h.get("sla_due"), opened),
            items=int(_float(h.get("items"))), amount=_float(h.get("amount")), expected_loss=el,
            top_risk=_float(h.get("top_risk")), top_reasons=reasons,
            stages=tuple(s for s in (h.get("stages") or "").split(",") if s),
            models=tuple(m for m in (h.get("models") or "").split(",") if m),
            owner=h.get("owner") or "", lease_until=_float(lease) if lease else None,
            escalated=h.get("escalated") == "1", status=h.get("status") or "",
            priority=priority_at(el, opened, now, age_doubling_s),
        )


@dataclass(frozen=True)
class QueueFilter:
    """Queue filters: stage (RULES / LIGHT / HEAVY), model version, minimum top risk; and the sort."""

    stage: str = ""
    model_version: str = ""
    min_risk: float = 0.0
    sort: str = "priority"

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise ValueError(f"sort: expected one of {', '.join(SORTS)}, got {self.sort!r}")
        if not 0.0 <= self.min_risk <= 1.0:
            raise ValueError(f"min_risk: expected a number in [0, 1], got {self.min_risk!r}")

    @property
    def active(self) -> bool:
        return bool(self.stage or self.model_version or self.min_risk > 0)

    def accepts(self, case: CaseSummary) -> bool:
        return ((not self.stage or self.stage in case.stages)
                and (not self.model_version or self.model_version in case.models)
                and case.top_risk >= self.min_risk)


@dataclass
class VerdictResult:
    code: str  # 'ok' or 'unchanged'
    resolved: int
    case_open: bool


@dataclass
class CaseStore:
    """The case store on one Redis client (``redis.asyncio``, ``decode_responses=True``).

    Parameters
    ----------
    redis : the client.
    settings : SLA, lease, aging, retention and scan sizes.
    clock : wall clock, epoch s.
    """

    redis: Any
    settings: ReviewSettings
    clock: Callable[[], float] = time.time
    keys: ReviewKeys = field(init=False)

    def __post_init__(self) -> None:
        self.keys = ReviewKeys(self.settings.redis_prefix)
        r = self.redis
        self._ingest = r.register_script(scripts.INGEST)
        self._claim = r.register_script(scripts.CLAIM)
        self._handover = r.register_script(scripts.HANDOVER)
        self._verdict = r.register_script(scripts.VERDICT)
        self._chargeback = r.register_script(scripts.CHARGEBACK)
        self._unblock = r.register_script(scripts.UNBLOCK)
        self._queue_page = r.register_script(scripts.QUEUE_PAGE)

    # ---- helpers -------------------------------------------------------------------------------------------
    def _args(self, *rest: Any) -> list[Any]:
        return [self.settings.redis_prefix, repr(self.clock()), *rest]

    def audit_cutoff_ms(self) -> str:
        """Oldest stream id kept in the audit journal and label log (retention)."""
        return str(int((self.clock() - self.settings.retention_s) * MS_PER_S))

    # ---- ingest --------------------------------------------------------------------------------------------
    async def ingest(self, limit: int | None = None) -> int:
        """Move new REVIEW items from the worker's inbox into cases; returns how many were moved."""
        s = self.settings
        moved = 0
        while limit is None or moved < limit:
            chunk = INGEST_CHUNK if limit is None else min(INGEST_CHUNK, limit - moved)
            n = int(await self._ingest(args=self._args(chunk, s.age_doubling_s, s.sla_s, s.retention_s)))
            moved += n
            if n < chunk:
                break
        return moved

    # ---- reads ---------------------------------------------------------------------------------------------
    async def case(self, customer_id: int) -> CaseSummary | None:
        h = await self.redis.hgetall(self.keys.case(customer_id))
        if not h or "customer_id" not in h:
            return None
        return CaseSummary.from_hash(h, self.clock(), self.settings.age_doubling_s)

    async def case_items(self, customer_id: int) -> list[dict[str, str]]:
        """The pending items of the card's open case, highest risk first."""
        tids = await self.redis.zrevrange(self.keys.case_items(customer_id), 0, -1)
        return await self.items(tids)

    async def items(self, transaction_ids: list[Any]) -> list[dict[str, str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for tid in transaction_ids:
                pipe.hgetall(self.keys.item(tid))
            rows = await pipe.execute()
        return [row for row in rows if row]

    async def queue(self, flt: QueueFilter, offset: int = 0, limit: int | None = None,
                    max_scan: int = 5000) -> tuple[list[CaseSummary], int]:
        """Open cases in the filter's sort order, and how many cases are open in all.

        The page is read by one script call; with filters it looks at cases in sort order until ``limit`` match or
        ``max_scan`` were looked at.
        """
        limit = limit or self.settings.page_size
        raw = await self._queue_page(args=self._args(
            flt.sort, int(flt.sort == "age"), int(offset), int(limit), int(max_scan), flt.stage, flt.model_version,
            repr(float(flt.min_risk))))
        page = orjson.loads(raw)
        now = self.clock()
        cases = [CaseSummary.from_hash(h, now, self.settings.age_doubling_s) for h in page["cases"]]
        return cases, int(page["total"])

    # ---- leases --------------------------------------------------------------------------------------------
    async def claim_next(self, analyst: str, admin: bool = False) -> tuple[int, bool] | None:
        """Lease the best claimable case to ``analyst``: (customer id, newly claimed); None when none is left.

        An analyst holds one case at a time: while the lease lasts, claim-next returns the case held.
        """
        return await self._run_claim(analyst, admin, "")

    async def claim(self, analyst: str, customer_id: int, admin: bool = False) -> bool:
        """Lease this case to ``analyst`` (giving up the case held); raises :class:`ReviewError` when it is
        resolved, leased to someone else, or escalated and the analyst is not an admin.  True when newly leased."""
        out = await self._run_claim(analyst, admin, str(int(customer_id)))
        assert out is not None
        return out[1]

    async def _run_claim(self, analyst: str, admin: bool, wanted: str) -> tuple[int, bool] | None:
        s = self.settings
        out = await self._claim(args=self._args(analyst, int(admin), s.lease_s, s.claim_scan, s.age_doubling_s,
                                                s.retention_s, wanted))
        if not out:
            return None
        if out[1] == "error":
            raise ReviewError(out[0])
        return int(out[0]), out[1] == "new"

    async def handover(self, actor: str, customer_id: int, mode: str, admin: bool = False,
                       target: str = "") -> None:
        """Release, skip, escalate (to an admin) or reassign (admin only, to ``target``) a case."""
        if mode not in HANDOVER_MODES:
            raise ValueError(f"mode: expected one of {HANDOVER_MODES}, got {mode!r}")
        if mode == "reassign" and not target:
            raise ValueError("reassign needs a target analyst")
        s = self.settings
        code = await self._handover(args=self._args(
            actor, int(admin), customer_id, mode, target, s.lease_s, s.skip_ttl_s, s.age_doubling_s,
            s.retention_s, self.audit_cutoff_ms()))
        if code != "ok":
            raise ReviewError(code)

    # ---- verdicts ------------------------------------------------------------------------------------------
    async def verdict(self, actor: str, customer_id: int, verdict: str, note: str = "",
                      transaction_id: int | None = None, admin: bool = False) -> VerdictResult:
        """Fraud / legit for one item or every pending item of the case (idempotent: a repeat changes nothing).

        Each resolved item gets an audit entry and a label-log entry (sent to the labels topic); *fraud* puts the
        card on the block list.
        """
        if verdict not in VERDICTS:
            raise ValueError(f"verdict: expected one of {', '.join(VERDICTS)}, got {verdict!r}")
        s = self.settings
        now = self.clock()
        code, n, still_open = await self._verdict(args=[
            s.redis_prefix, repr(now), actor, int(admin), customer_id,
            "" if transaction_id is None else str(int(transaction_id)), verdict, note, day_of(now),
            s.age_doubling_s, s.retention_s, self.audit_cutoff_ms(), s.block_ttl_s])
        if code not in ("ok", "unchanged"):
            raise ReviewError(code)
        return VerdictResult(code, int(n), bool(int(still_open)))

    async def resolve_chargebacks(self, labels: list[tuple[int, bool]]) -> int:
        """Resolve the pending items among these (transaction id, fraud) chargeback labels; returns how many."""
        if not labels:
            return 0
        s = self.settings
        flat: list[Any] = []
        for tid, fraud in labels:
            flat.extend((int(tid), int(bool(fraud))))
        return int(await self._chargeback(args=self._args(s.age_doubling_s, s.retention_s, *flat)))

    # ---- block list ----------------------------------------------------------------------------------------
    async def blocked(self, limit: int = 200) -> list[dict[str, Any]]:
        """Cards on the block list, newest first, with their entries."""
        ids = await self.redis.zrevrange(self.keys.blocked, 0, limit - 1)
        raws = await self.redis.mget([self.keys.block(c) for c in ids]) if ids else []
        out = []
        for cid, raw in zip(ids, raws):
            if raw is not None:
                entry = json.loads(raw)
                entry["customer_id"] = int(cid)
                out.append(entry)
        return out

    async def is_blocked(self, customer_id: int) -> bool:
        return bool(await self.redis.exists(self.keys.block(customer_id)))

    async def unblock(self, actor: str, customer_id: int, note: str = "") -> bool:
        """Lift a card's block (audited); False when it was not blocked."""
        return bool(int(await self._unblock(args=self._args(actor, customer_id, note, self.audit_cutoff_ms()))))

    async def publish_config(self) -> None:
        """Write the settings the worker's calls of the scripts need (SLA, aging, retention) to Redis."""
        s = self.settings
        await self.redis.hset(self.keys.config, mapping={"sla_s": s.sla_s, "age_doubling_s": s.age_doubling_s,
                                                         "retention_s": s.retention_s})

    # ---- retention -----------------------------------------------------------------------------------------
    async def trim(self) -> None:
        """Apply retention to the journals and the block-list index (items and cases expire by themselves)."""
        cutoff = self.audit_cutoff_ms()
        await self.redis.xtrim(self.keys.audit, minid=cutoff, approximate=False)
        await self.redis.xtrim(self.keys.label_log, minid=cutoff, approximate=False)
        await self.redis.zremrangebyscore(self.keys.blocked, "-inf", self.clock() - self.settings.block_ttl_s)
