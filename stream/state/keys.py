"""The whole Redis keyspace of fraudstream, in one place.  ``<p>`` is the key prefix (``redis_prefix``, ``fs``).

Online feature state (TTL ``state_ttl_s``, refreshed on every write):

``<p>:cust:<customer_id>`` (string)
    write stamp + ``CustomerHistory.to_bytes()``; written only by the worker that owns the customer's partition.
``<p>:term:<terminal_id>`` (string)
    write stamp + ``TerminalHistory.to_bytes()``; shared by all workers, so only written by a compare-and-write
    that checks it still holds what the batch read (by its stamp: :mod:`~fraudstream.stream.state.write_stamp`).
``<p>:labels-applied:<labels topic>:<partition>`` (string, TTL ``state_ttl_s``)
    offset (decimal ASCII) up to which (exclusive) that partition's labels are in the terminal histories.  Only
    ever raised (compare-and-write); a starting worker resumes reading labels there; labels below it are skipped.

Decisions (TTL ``decision_ttl_s``):

``<p>:dec:<transaction_id>`` (string)
    the decision's JSON exactly as produced; a re-delivered transaction whose key exists is answered with these
    bytes and not scored again.

State epoch (no expiry):

``<p>:state-epoch`` (string)
    ``StateEpoch.encode()`` (JSON: ``epoch_id``, ``created_at`` epoch s, ``transactions_partitions``,
    ``labels_partitions``), written once when the deployment's state is first created
    (:mod:`fraudstream.stream.state.epoch`).  Every batch's compare-and-write checks it is still the value the
    worker started with, so a Redis that came back empty is noticed before anything is written to it.

Event-time alignment (TTL ``alignment_progress_ttl_s`` of the worker, 60 s):

``<p>:progress:<transactions topic>:<partition>`` (string)
    ``PartitionProgress.encode()`` of the worker that owns the partition (JSON ``[next_offset, head,
    processed_to]``), read by the workers that own the other partitions.

Review queue (no expiry):

``<p>:review:pending`` (sorted set)
    member = transaction id (decimal string), score = risk; highest risk first.  A verdict removes the member.
``<p>:review:item:<transaction_id>`` (hash)
    the fields of ``stream.types.review_item_fields``; a verdict sets ``status``, ``verdict``, ``analyst``,
    ``resolved_at``.

Review budget (TTL ``REVIEW_CASES_TTL_S``, 3 days; only with a budget, ``review_cases_per_day`` of the worker):

``<p>:review:cases-day:<UTC day number>`` (string)
    that UTC day's review-case log, appended by the batch that opened a case or learned an analyst's verdict (a
    batch reads its transactions' days and the two before, whose cases they may join),
    16 bytes an entry: a little-endian int64 (the card id for a case opened, ``-card - 1`` for a verdict) and a
    little-endian float64 (the transaction's event time, or the verdict's ``known_at``, epoch s)
    (:mod:`fraudstream.detectors.cascade.review_budget`).
``<p>:review:budget`` (string, no expiry)
    the review budget a worker runs with (``review_cases_per_day``, decimal; 0 = none), written at its start for
    the review page's stats.

Live block list (TTL ``block_ttl_s`` of the review service, 365 days):

``<p>:blocklist:<customer_id>`` (string, JSON ``{"since": epoch s, "by": analyst, "case": card}``)
    the card was labelled fraud by an analyst; the worker reads the entries of a batch's cards with the rest of
    the batch's state and its rules stage blocks them (``stream.core.block_list``).  Lifted by an admin.

Review workbench (:class:`ReviewKeys`; written by the review service's scripts in
:mod:`fraudstream.stream.state.review_scripts`, which the worker also calls to settle items by chargeback and to
file new items into cases):


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

A batch's decisions, histories, label offsets and review items are written in one atomic script call
(:mod:`fraudstream.stream.state.compare_and_write`), so a REVIEW decision is never stored without its item.
"""

from __future__ import annotations

#: Expiry of a day's review-case list (s): the day itself and two more, the late events of the day and the
#: transactions that may join its cases (``CASE_LOOKBACK_DAYS``).
REVIEW_CASES_TTL_S = 3 * 86_400


class Keyspace:
    """Names of every Redis key, under one prefix.

    Parameters
    ----------
    prefix : prefix of every key.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.review_pending = f"{prefix}:review:pending"

    def customer(self, customer_id: int) -> str:
        return f"{self.prefix}:cust:{customer_id}"

    def terminal(self, terminal_id: int) -> str:
        return f"{self.prefix}:term:{terminal_id}"

    def labels_applied(self, labels_topic: str, partition: int) -> str:
        return f"{self.prefix}:labels-applied:{labels_topic}:{partition}"

    def decision(self, transaction_id: int) -> str:
        return f"{self.prefix}:dec:{transaction_id}"

    @property
    def state_epoch(self) -> str:
        return f"{self.prefix}:state-epoch"

    def decision_pattern(self) -> str:
        """SCAN pattern of every stored decision (a state that predates the epoch marker has some)."""
        return f"{self.prefix}:dec:*"

    def progress(self, topic: str, partition: int) -> str:
        return f"{self.prefix}:progress:{topic}:{partition}"

    def review_item(self, transaction_id: int | str) -> str:
        return f"{self.prefix}:review:item:{transaction_id}"

    def block(self, customer_id: int | str) -> str:
        return f"{self.prefix}:blocklist:{customer_id}"

    @property
    def review_budget(self) -> str:
        """The review budget the workers run with (for the review page)."""
        return f"{self.prefix}:review:budget"

    def review_cases_day(self, day: int) -> str:
        """The review-case log of UTC day ``day`` (days since the epoch) of event time."""
        return f"{self.prefix}:review:cases-day:{int(day)}"


#: Sorts of the queue page, each backed by an index sorted set.
SORTS = ("priority", "age", "amount", "risk")


class ReviewKeys(Keyspace):
    """The review workbench's keys (and, inherited, the worker's) under one prefix."""

    @property
    def inbox(self) -> str:
        return self.review_pending

    def item(self, transaction_id: int | str) -> str:
        return self.review_item(transaction_id)

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
