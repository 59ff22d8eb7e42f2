"""What the case page shows about a card: its items with every stage's score and reason contributions, the
card's last 30 days of transactions, each terminal's recent fraud rate and volume, and whether each
card-terminal pair is new.

The card and terminal histories are the worker's online feature state (read, never written, here).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from fraudstream.detectors.features.online import CustomerHistory, TerminalHistory
from fraudstream.stream.state.keys import Keyspace
from fraudstream.stream.state.write_stamp import value_of

DAY_S = 86_400.0
#: Window of the card timeline and of the terminal statistics (s).
TIMELINE_WINDOW_S = 30 * DAY_S
#: ``NAME:+1.234`` / ``NAME:-0.5``: a feature's contribution to the model's score (log-odds).
CONTRIBUTION = re.compile(r"^(?P<name>[A-Za-z0-9_]+):(?P<value>[+-]\d+(?:\.\d+)?(?:e[+-]?\d+)?)$")


@dataclass(frozen=True)
class Contribution:
    name: str
    value: float
    width_pct: float  # bar width relative to the largest |value| of the item (0..100)


@dataclass
class ItemView:
    fields: dict[str, str]
    contributions: list[Contribution] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    new_pair: bool | None = None

    def score(self, name: str) -> float | None:
        value = self.fields.get(name, "")
        try:
            return float(value)
        except ValueError:
            return None


@dataclass(frozen=True)
class TimelinePoint:
    timestamp: float
    amount: float
    terminal_id: int
    transaction_id: int
    under_review: bool


@dataclass(frozen=True)
class TerminalView:
    terminal_id: int
    volume_30d: int
    known_frauds_30d: int

    @property
    def fraud_rate(self) -> float | None:
        return self.known_frauds_30d / self.volume_30d if self.volume_30d else None


def parse_reasons(raw: str) -> tuple[list[Contribution], list[str]]:
    """Reasons (JSON list) split into feature contributions (for the chart) and other tags (rules, thresholds)."""
    try:
        reasons = json.loads(raw or "[]")
    except ValueError:
        reasons = []
    pairs, tags = [], []
    for reason in reasons if isinstance(reasons, list) else []:
        m = CONTRIBUTION.match(str(reason))
        if m:
            pairs.append((m.group("name"), float(m.group("value"))))
        else:
            tags.append(str(reason))
    top = max((abs(v) for _, v in pairs), default=0.0)
    return [Contribution(n, v, 100.0 * abs(v) / top if top > 0 else 0.0) for n, v in pairs], tags


def timeline(history: CustomerHistory | None, review_ids: set[int], end: float) -> list[TimelinePoint]:
    """The card's transactions in ``(end - 30 days, end]``, oldest first."""
    if history is None:
        return []
    start = end - TIMELINE_WINDOW_S
    return [TimelinePoint(t, a, term, tid, tid in review_ids)
            for t, tid, a, term in zip(history.timestamps, history.transaction_ids, history.amounts,
                                       history.terminal_ids) if start < t <= end]


def terminal_view(terminal_id: int, history: TerminalHistory | None, end: float) -> TerminalView:
    """Volume and known frauds of the terminal in ``(end - 30 days, end]``."""
    if history is None:
        return TerminalView(terminal_id, 0, 0)
    start = end - TIMELINE_WINDOW_S
    volume = sum(1 for t in history.timestamps if start < t <= end)
    frauds = sum(1 for t in history.fraud_timestamps if start < t <= end)
    return TerminalView(terminal_id, volume, frauds)


def is_new_pair(history: CustomerHistory | None, terminal_id: int, transaction_id: int, at: float) -> bool | None:
    """True when the card did not use the terminal in the 30 days before this transaction (None: no history)."""
    if history is None:
        return None
    start = at - TIMELINE_WINDOW_S
    for t, tid, term in zip(history.timestamps, history.transaction_ids, history.terminal_ids):
        if term == terminal_id and tid != transaction_id and start <= t <= at:
            return False
    return True


@dataclass
class CaseFile:
    items: list[ItemView]
    timeline: list[TimelinePoint]
    terminals: list[TerminalView]
    timeline_end: float

    def svg_points(self, width: float = 720.0, height: float = 120.0) -> list[dict[str, Any]]:
        """Timeline points placed on a ``width`` x ``height`` chart (x = time, y = log amount)."""
        if not self.timeline:
            return []
        start = self.timeline_end - TIMELINE_WINDOW_S
        top = max(math.log1p(p.amount) for p in self.timeline) or 1.0
        out = []
        for p in self.timeline:
            x = 8 + (width - 16) * (p.timestamp - start) / TIMELINE_WINDOW_S
            y = height - 8 - (height - 16) * math.log1p(p.amount) / top
            out.append({"x": round(x, 1), "y": round(y, 1), "point": p})
        return out


async def load_case_file(raw_redis: Any, prefix: str, items: list[dict[str, str]]) -> CaseFile:
    """Build the case file of a card's items from the online state (``raw_redis``: ``decode_responses=False``)."""
    keys = Keyspace(prefix)
    # the history the features read: the account's when the transaction named one, else the card's
    customer_ids = sorted({int(i.get("account_id") or i["customer_id"]) for i in items
                           if i.get("account_id") or i.get("customer_id")})
    terminal_ids = sorted({int(i["terminal_id"]) for i in items if i.get("terminal_id")})
    wanted = [keys.customer(c) for c in customer_ids] + [keys.terminal(t) for t in terminal_ids]
    raws = [value_of(raw) for raw in await raw_redis.mget(wanted)] if wanted else []
    customers = {c: CustomerHistory.from_bytes(raw) for c, raw in zip(customer_ids, raws) if raw is not None}
    terminals = {t: TerminalHistory.from_bytes(raw) for t, raw in zip(terminal_ids, raws[len(customer_ids):])
                 if raw is not None}
    history = customers.get(customer_ids[0]) if customer_ids else None
    views = []
    ends = []
    for item in items:
        contributions, tags = parse_reasons(item.get("reasons", "[]"))
        tid, term = int(item["transaction_id"]), int(item.get("terminal_id") or 0)
        at = float(item.get("event_timestamp") or 0.0)
        ends.append(at)
        views.append(ItemView(item, contributions, tags, is_new_pair(history, term, tid, at)))
    end = max(ends) if ends else (max(history.timestamps) if history is not None and len(history) else 0.0)
    review_ids = {int(i["transaction_id"]) for i in items}
    return CaseFile(views, timeline(history, review_ids, end),
                    [terminal_view(t, terminals.get(t), end) for t in terminal_ids], end)
