"""Every Redis key of the analysts' workbench, defined in one place (``<p>`` is the Redis key prefix).

Worker side (written by the stream worker, read here):

``<p>:review:pending`` (sorted set)
    inbox of new REVIEW items: transaction id by risk.  :meth:`CaseStore.ingest` moves each into its card's case.
``<p>:review:item:<transaction id>`` (hash)
    the item (see :mod:`fraudstream.review_queue.queue`); the workbench adds ``case``, ``status``, ``verdict``,
    ``source``, ``analyst``, ``note``, ``resolved_at`` and sets an expiry once it is resolved.
``<p>:blocklist:<customer id>`` (string, JSON)
    the card is on the live block list (``since`` epoch s, ``by``, ``case``); the rules stage blocks it.

Workbench side:

``<p>:review:case:<customer id>`` (hash)
    the card's case: ``status`` (open / resolved), ``opened_at`` and ``sla_due`` (epoch s), ``items`` (pending),
    ``amount``, ``expected_loss`` (sum of risk x amount), ``top_risk``, ``top_reasons`` (JSON), ``stages`` and
    ``models`` (comma lists), ``owner`` and ``lease_until`` while leased, ``escalated`` (0/1).
``<p>:review:case-items:<customer id>`` (sorted set): pending transaction ids of the open case, by risk.
``<p>:review:idx:{priority,age,amount,risk}`` (sorted sets): open cases by priority key, by ``-opened_at``, by
    amount and top risk (queue page sorts).
``<p>:review:available`` / ``<p>:review:escalated`` (sorted sets, priority key): claimable cases.
``<p>:review:leases`` (sorted set): leased cases by lease expiry (epoch s).
``<p>:review:holder:<analyst>`` (string): the case the analyst holds.
``<p>:review:skips:<analyst>`` (set, expires): cases the analyst skipped.
``<p>:review:blocked`` (sorted set): cards on the block list by the time they were put there.
``<p>:review:config`` (hash): ``sla_s``, ``age_doubling_s``, ``retention_s`` the review service runs with (the
    worker's calls of the case scripts read them).
``<p>:review:audit`` (stream): the append-only audit journal.
``<p>:review:label-log`` (stream): every label the workbench produced or settled (durable; exported);
    ``<p>:review:label-log:published`` holds the id up to which it is on the labels topic.
``<p>:review:verdicts:<YYYY-MM-DD>`` (hash): ``<analyst>|<verdict>`` -> count that day (UTC).
``<p>:review:precision`` (hash): ``<model version>|<verdict>`` -> count (measured precision of REVIEW).
``<p>:review:user:<name>`` (hash) and ``<p>:review:users`` (set): accounts.
``<p>:review:session:<sha-256 of the token>`` (hash, expires): a login session.
``<p>:review:login-fail:{user,addr}:<who>`` (counter, expires), ``<p>:review:lock:{user,addr}:<who>`` (expires).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Sorts of the queue page, each backed by an index sorted set.
SORTS = ("priority", "age", "amount", "risk")


@dataclass(frozen=True)
class ReviewKeys:
    """Key names under one prefix."""

    prefix: str

    @property
    def inbox(self) -> str:
        return f"{self.prefix}:review:pending"

    def item(self, transaction_id: int | str) -> str:
        return f"{self.prefix}:review:item:{transaction_id}"

    def block(self, customer_id: int | str) -> str:
        return f"{self.prefix}:blocklist:{customer_id}"

    @property
    def base(self) -> str:
        """Prefix of the workbench's own keys (Lua scripts build per-entity keys from it)."""
        return f"{self.prefix}:review"

    def case(self, customer_id: int | str) -> str:
        return f"{self.base}:case:{customer_id}"

    def case_items(self, customer_id: int | str) -> str:
        return f"{self.base}:case-items:{customer_id}"

    def index(self, sort: str) -> str:
        return f"{self.base}:idx:{sort}"

    @property
    def available(self) -> str:
        return f"{self.base}:available"

    @property
    def escalated(self) -> str:
        return f"{self.base}:escalated"

    @property
    def leases(self) -> str:
        return f"{self.base}:leases"

    def holder(self, analyst: str) -> str:
        return f"{self.base}:holder:{analyst}"

    def skips(self, analyst: str) -> str:
        return f"{self.base}:skips:{analyst}"

    @property
    def blocked(self) -> str:
        return f"{self.base}:blocked"

    @property
    def config(self) -> str:
        return f"{self.base}:config"

    @property
    def audit(self) -> str:
        return f"{self.base}:audit"

    @property
    def label_log(self) -> str:
        return f"{self.base}:label-log"

    @property
    def label_log_published(self) -> str:
        return f"{self.base}:label-log:published"

    def verdicts_day(self, day: str) -> str:
        return f"{self.base}:verdicts:{day}"

    @property
    def precision(self) -> str:
        return f"{self.base}:precision"

    def user(self, name: str) -> str:
        return f"{self.base}:user:{name}"

    @property
    def users(self) -> str:
        return f"{self.base}:users"

    def session(self, token_digest: str) -> str:
        return f"{self.base}:session:{token_digest}"

    def login_failures(self, kind: str, who: str) -> str:
        return f"{self.base}:login-fail:{kind}:{who}"

    def lock(self, kind: str, who: str) -> str:
        return f"{self.base}:lock:{kind}:{who}"
