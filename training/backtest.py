"""Closed-loop backtest: a period of history replayed in event time through the worker's own core.

Every step is one worker micro-batch through :class:`~fraudstream.stream.core.batch.BatchPipeline` on the
in-memory state store (:class:`~fraudstream.stream.state.memory.InMemoryStateStore`, the same semantics and
byte round trip as the Redis one): parsing, dedup by transaction id, the labels applied once per offset, the
incremental features, the rules with the live block list, ONE vectorized cascade call, the decision JSON, the
review items and their settling by chargeback are the worker's code, not a copy of it.  Only what lies around
the worker is simulated here: the label feed, the analysts and the review service's block list.

The loop advances in steps of event time (at most ``step_s``, and ending where an analyst case becomes ready).
Per step ``[a, b)``, decided at ``b``:

1. one batch holds the labels known before ``b`` not sent yet (chargebacks from the label model, analyst
   verdicts given so far; :class:`~fraudstream.training.backtest_feed.LabelFeed`) and the step's transactions;
   the features count a label only from its ``known_at``, so sending it early changes nothing before then;
2. the worker core decides the batch; REVIEW decisions join their card's case
   (:mod:`fraudstream.training.analysts`);
3. at ``b`` the simulated analysts work the ready cases whose items are still pending in the store (a chargeback
   settles an item, as live); their verdicts become labels known from ``b``, and a fraud verdict puts the card
   on the store's block list, as the review service does; with ``block_on_chargeback`` so does a chargeback
   (the issuer closing the card; the live review service does not); the worker's rules stage blocks every later
   transaction of a listed card.

Rows in the warm-up before ``start`` (by default as far back as the features look, 38 days) go through the
same batches, in steps of a day, so the period starts in steady state; their decisions are not reported.
No broker and no Redis.
"""

from __future__ import annotations

import asyncio
import heapq
from dataclasses import dataclass, field

import numpy as np
import orjson
import pandas as pd

from fraudstream.detectors.cascade.cascade import Cascade
from fraudstream.detectors.cascade.review_budget import REASON_REVIEW_BUDGET
from fraudstream.detectors.features.definition import DAY_S
from fraudstream.detectors.features.online import IncrementalFeatures
from fraudstream.detectors.schema import (
    ACCOUNT_ID,
    CUSTOMER_ID,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
    TX_FRAUD_SCENARIO,
    LabelEvent,
    datetime_to_epoch_seconds,
)
from fraudstream.stream.core.batch import ANALYST_SOURCE, BatchOutcome, BatchPipeline
from fraudstream.stream.core.block_list import REASON_LIVE_BLOCK_LIST
from fraudstream.stream.state.memory import InMemoryStateStore
from fraudstream.stream.types import STATUS_PENDING, STATUS_RESOLVED
from fraudstream.training.analysts import AnalystSettings, ReviewItem, SimulatedAnalysts, Verdict
from fraudstream.training.backtest_feed import (
    LABELS_TOPIC,
    TRANSACTIONS_TOPIC,
    CardNumbers,
    LabelFeed,
    fraud_episodes,
    transaction_events,
)
from fraudstream.training.label_model import ChargebackDelay, chargeback_known_at
from fraudstream.training.progress import SILENT, Progress
from fraudstream.training.splits import known_compromised_period_rows

#: Reason of a decision made by the live block list (the worker's own).
REASON_BLOCKED_CARD = REASON_LIVE_BLOCK_LIST
#: Column of the decisions frame: the row is in the period's handbook-style test set.
HANDBOOK_TEST = "HANDBOOK_TEST"
#: Column of the decisions frame: the card number the worker saw (the customer id unless reissued).
CARD_ID = "CARD_ID"
SOURCE_CHARGEBACK = "chargeback"
SOURCE_ANALYST = ANALYST_SOURCE
#: Default longest event-time step (s): the loop's largest micro-batch span.
DEFAULT_STEP_S = 3_600.0
#: Block list modes (see :class:`BacktestSettings`).
BLOCK_REISSUE, BLOCK_CARD = "reissue", "card"
BLOCK_MODES = (BLOCK_REISSUE, BLOCK_CARD)
#: Default time a confirmed-fraud card stays blocked in card mode (days).
DEFAULT_BLOCK_DAYS = 14.0
#: Warm-up rows go through the worker core in steps of this many s of event time.
WARMUP_CHUNK_S = DAY_S
#: Stored decisions are dropped this long (s) after their transaction, as the worker's ``decision_ttl_s``
#: (14 days) expires them in Redis; only a re-delivery within it is answered from the store.
DECISION_RETENTION_S = 14 * DAY_S


class BacktestError(ValueError):
    """A backtest that cannot run as asked (period outside the data, no labels, bad settings)."""


@dataclass(frozen=True)
class BacktestSettings:
    """Settings of one backtest run.

    Parameters
    ----------
    start, end : the period decided, ``[start, end)`` (naive UTC timestamps).
    warmup_days : days before ``start`` that feed the features only; None = as far back as the features reach
        (the terminal windows plus the label delay, 37 days by default), so that every window is complete when
        the period starts (with less, the first days' 30-day windows are short).
    labels_delay : the chargeback delay distribution.
    analysts : how analysts work REVIEW cases; None = no analysts (chargebacks only).
    step_s : longest event time of one loop step (s); steps also end where an analyst case becomes ready, so a
        verdict is given exactly ``analysts.delay_s`` after its case opened (when capacity allows).
    block_mode : :data:`BLOCK_REISSUE` (default: a blocked card is replaced; its old number, which only the
        fraudster of that compromise still uses, stays blocked, while the customer's legitimate rows, and the
        frauds of a later, separate attack on the customer (a new fraud episode:
        :func:`~fraudstream.training.backtest_feed.fraud_episodes`), go on with a new number that names the
        customer as its account, so the worker's features go on from the customer's history) or
        :data:`BLOCK_CARD` (the card id stays the customer id and every later transaction of it is blocked for
        ``block_days``; simulated data never reissues a card, so this also blocks the customer's later
        legitimate transactions).
    block_days : how long a card stays on the list in :data:`BLOCK_CARD` mode (days; 0 = for ever; lifted at the
        first step boundary after it ran out).
    block_on_chargeback : a chargeback also puts its card on the list (from the first step after it is known),
        not only an analyst's fraud verdict.
    review_budget : the worker's review budget, review cases a UTC day of event time may open (0 = none, the
        worker's default; :mod:`~fraudstream.detectors.cascade.review_budget`).
    seed : seed of the label model (chargeback delays).
    """

    start: pd.Timestamp
    end: pd.Timestamp
    warmup_days: int | None = None
    labels_delay: ChargebackDelay = field(default_factory=lambda: ChargebackDelay.parse("7d"))
    analysts: AnalystSettings | None = field(default_factory=AnalystSettings)
    step_s: float = DEFAULT_STEP_S
    block_mode: str = "reissue"
    block_days: float = DEFAULT_BLOCK_DAYS
    block_on_chargeback: bool = True
    review_budget: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.end > self.start:
            raise BacktestError(f"empty period: --from {self.start} is not before --to {self.end}")
        if self.warmup_days is not None and self.warmup_days < 0:
            raise BacktestError(f"warm-up must be >= 0 days, got {self.warmup_days}")
        if not self.step_s > 0:
            raise BacktestError(f"step must be > 0 s, got {self.step_s}")
        if self.block_mode not in BLOCK_MODES:
            raise BacktestError(f"block mode must be one of {', '.join(BLOCK_MODES)}, got {self.block_mode!r}")
        if self.block_days < 0:
            raise BacktestError(f"block days must be >= 0, got {self.block_days}")
        if self.review_budget < 0:
            raise BacktestError(f"review budget must be >= 0 cards a day, got {self.review_budget}")


@dataclass
class BacktestRun:
    """What one backtest produced.

    decisions : one row per transaction of the period in event-time order: ``TRANSACTION_ID``, ``TX_DATETIME``,
        ``CUSTOMER_ID``, ``CARD_ID`` (the card number the worker saw), ``TERMINAL_ID``, ``TX_AMOUNT``,
        ``TX_FRAUD``, ``RISK``, ``DECISION``, ``STAGE`` (names), ``LIGHT_SCORE``, ``ANOMALY_SCORE``,
        ``HEAVY_SCORE`` (nan where the stage did not run), ``REASONS`` (tuples), ``MODEL_VERSION``, as in the
        worker's decision JSON, and ``HANDBOOK_TEST`` (the row is in the handbook-style test set of the period,
        see :func:`fraudstream.training.splits.known_compromised_period_rows`); ``TX_FRAUD_SCENARIO`` too when
        the data has it.
    verdicts : every analyst verdict, in the order given.
    analysts : the analysts (their log), None without analysts.
    blocked_at : card -> time (epoch s) from which it was last put on the block list.
    labels : every label the worker was sent, in the order sent (chargebacks and verdicts).
    block_events : (time s, card, True = put on the list / False = lifted), in order; each took effect for the
        batches from that time on.
    """

    settings: BacktestSettings
    model_version: str
    decisions: pd.DataFrame
    verdicts: list[Verdict]
    analysts: SimulatedAnalysts | None
    blocked_at: dict[int, float]
    labels: list[LabelEvent] = field(default_factory=list)
    block_events: list[tuple[float, int, bool]] = field(default_factory=list)


@dataclass(frozen=True)
class _Bundle:
    """What the worker core reads of a loaded bundle."""

    cascade: Cascade


@dataclass(frozen=True)
class _Model:
    """What the worker core reads of its active model (``stream.model_watch.ActiveModel``)."""

    bundle: _Bundle
    features: IncrementalFeatures

    @property
    def version(self) -> str:
        return str(self.bundle.cascade.version)


def warmup_days(settings: BacktestSettings, cascade: Cascade) -> int:
    """The warm-up (days) a run uses: the setting, or the longest look-back of the model's features."""
    if settings.warmup_days is not None:
        return settings.warmup_days
    config = cascade.feature_config
    return int(np.ceil(max(config.customer_retention_s, config.terminal_retention_s) / DAY_S)) + 1


def _ordered(frame: pd.DataFrame, settings: BacktestSettings, warmup: int) -> pd.DataFrame:
    missing = [c for c in (TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_FRAUD)
               if c not in frame.columns]
    if missing:
        raise BacktestError(f"a backtest needs labelled data; missing column(s) {', '.join(missing)}")
    first, last = frame[TX_DATETIME].min(), frame[TX_DATETIME].max()
    if settings.start > last or settings.end <= first:
        raise BacktestError(f"period {settings.start}..{settings.end} is outside the data ({first}..{last})")
    warmup_start = settings.start - pd.Timedelta(days=warmup)
    times = frame[TX_DATETIME]
    rows = frame.loc[(times >= warmup_start) & (times < settings.end)]
    return rows.sort_values([TX_DATETIME, TRANSACTION_ID], kind="stable").reset_index(drop=True)


def chargebacks(rows: pd.DataFrame, delay: ChargebackDelay, seed: int) -> list[LabelEvent]:
    """The chargeback label of every fraud of ``rows`` (known ``delay`` after the transaction)."""
    t = datetime_to_epoch_seconds(rows[TX_DATETIME])
    known_at = chargeback_known_at(t, rows[TX_FRAUD].to_numpy(), delay, seed)
    hit = np.flatnonzero(~np.isnan(known_at))
    tid, term, cust = (rows[c].to_numpy(dtype=np.int64)[hit] for c in (TRANSACTION_ID, TERMINAL_ID, CUSTOMER_ID))
    return [LabelEvent(int(a), int(b), int(c), float(x), True, float(k), SOURCE_CHARGEBACK)
            for a, b, c, x, k in zip(tid.tolist(), term.tolist(), cust.tolist(), t[hit].tolist(),
                                     known_at[hit].tolist())]


def verdict_labels(verdicts: list[Verdict], customer_of: dict[int, int] | None = None) -> list[LabelEvent]:
    """Analyst verdicts as label events (source ``analyst``, known from the verdict time)."""
    return [LabelEvent(v.transaction_id, v.terminal_id, v.card, v.tx_time_s, v.fraud, v.known_at_s, SOURCE_ANALYST)
            for v in verdicts]



class _BlockListAdmin:
    """The review service's side of the block list in the backtest: who goes on the store's list, and when off.

    The worker reads the list with a batch's state; the backtest changes it only between batches.
    """

    def __init__(self, store: InMemoryStateStore, cards: CardNumbers, settings: BacktestSettings) -> None:
        self.store, self.cards = store, cards
        self.block_s = settings.block_days * DAY_S if settings.block_mode == BLOCK_CARD and settings.block_days \
            else np.inf
        self.blocked_at: dict[int, float] = {}
        self.events: list[tuple[float, int, bool]] = []
        self._lift: list[tuple[float, int]] = []

    def block(self, card: int, at_s: float) -> None:
        if card in self.store.blocked:
            return
        self.store.blocked.add(card)
        self.blocked_at[card] = at_s
        self.events.append((at_s, card, True))
        self.cards.blocked(card)
        if np.isfinite(self.block_s):
            heapq.heappush(self._lift, (at_s + self.block_s, card))

    def lift_expired(self, now_s: float) -> None:
        """Take off the list the cards whose block ran out by ``now_s``."""
        while self._lift and self._lift[0][0] <= now_s:
            _, card = heapq.heappop(self._lift)
            self.store.blocked.discard(card)
            self.events.append((now_s, card, False))


def _none_to_nan(value: float | None) -> float:
    return np.nan if value is None else float(value)


class _Loop:
    """One backtest run: the worker core on the in-memory store, fed step by step (see the module docstring)."""

    def __init__(self, rows: pd.DataFrame, cascade: Cascade, settings: BacktestSettings) -> None:
        self.settings = settings
        self.rows = rows
        self.tid = rows[TRANSACTION_ID].to_numpy(dtype=np.int64)
        self.t = datetime_to_epoch_seconds(rows[TX_DATETIME])
        self.terminal = rows[TERMINAL_ID].to_numpy(dtype=np.int64)
        self.amount = rows[TX_AMOUNT].to_numpy(dtype=np.float64)
        self.fraud = rows[TX_FRAUD].to_numpy().astype(bool)
        self.store = InMemoryStateStore()
        customers = rows[CUSTOMER_ID].to_numpy(dtype=np.int64)
        #: the account of each row (the file's ACCOUNT_ID, else the customer): a reissued card keeps its history
        self.account = rows[ACCOUNT_ID].to_numpy(dtype=np.int64) if ACCOUNT_ID in rows.columns else customers
        scenario = rows[TX_FRAUD_SCENARIO].to_numpy() if TX_FRAUD_SCENARIO in rows.columns else None
        self.cards = CardNumbers(customers, settings.block_mode == BLOCK_REISSUE,
                                 fraud_episodes(customers, self.t, self.fraud, scenario))
        self.card_of_row = np.empty(len(rows), dtype=np.int64)
        self.blocks = _BlockListAdmin(self.store, self.cards, settings)
        self.model = _Model(_Bundle(cascade), IncrementalFeatures(cascade.feature_config))
        self.now_s = 0.0
        self.pipeline = BatchPipeline(self.store, lambda: self.model, TRANSACTIONS_TOPIC, LABELS_TOPIC,  # type: ignore[arg-type, return-value]
                                      clock=lambda: self.now_s, review_cases_per_day=settings.review_budget)
        self.feed = LabelFeed()
        self.labels_sent: list[LabelEvent] = []
        self.analysts = SimulatedAnalysts(settings.analysts) if settings.analysts is not None else None
        self.verdicts: list[Verdict] = []
        self._expired_upto = 0
        order = np.argsort(self.tid, kind="stable")
        self._tid_order, self._tid_sorted = order, self.tid[order]

    async def step(self, lo: int, hi: int, bound_s: float) -> BatchOutcome:
        """One batch: the labels known before ``bound_s`` and rows ``[lo, hi)``, decided at ``bound_s``."""
        events, labels = self.feed.due(bound_s)
        rows = slice(lo, hi)
        cards = self.cards.cards(rows)
        self.card_of_row[rows] = cards
        events += transaction_events(self.tid[rows], self.t[rows], cards, self.account[rows], self.terminal[rows],
                                     self.amount[rows], lo)
        self.now_s = bound_s
        outcome = await self.pipeline.process(events)
        if len(outcome.decisions) != hi - lo:
            raise BacktestError(f"the worker core refused {hi - lo - len(outcome.decisions)} transaction(s) "
                                f"of {pd.Timestamp(bound_s, unit='s')} ({', '.join(sorted(set(outcome.dlq_reasons)))})")
        self.labels_sent += labels
        if self.settings.block_on_chargeback:
            for label in labels:
                if label.fraud and label.source == SOURCE_CHARGEBACK:
                    self.blocks.block(self._card_of(label.transaction_id), bound_s)
        self._expire_decisions(bound_s)
        return outcome

    def _card_of(self, transaction_id: int) -> int:
        """The card number row ``transaction_id`` was made with (the row was fed already)."""
        k = int(np.searchsorted(self._tid_sorted, transaction_id))
        return int(self.card_of_row[self._tid_order[k]])

    def _expire_decisions(self, now_s: float) -> None:
        upto = int(np.searchsorted(self.t, now_s - DECISION_RETENTION_S, side="left"))
        decisions = self.store.decisions
        for tid in self.tid[self._expired_upto:upto].tolist():
            decisions.pop(tid, None)
        self._expired_upto = max(self._expired_upto, upto)

    async def analysts_work(self, now_s: float) -> None:
        """The analysts work the ready cases at ``now_s``; verdicts become labels, fraud ones block the card."""
        if self.analysts is None:
            return
        settled = set()
        for tid in self.analysts.ready_items(now_s):
            if (await self.store.review_item(tid)).get("status") != STATUS_PENDING:
                settled.add(tid)
        given = self.analysts.work(now_s, settled)
        if not given:
            return
        self.verdicts += given
        self.feed.add(verdict_labels(given))
        for verdict in given:
            await self.store.resolve_review(verdict.transaction_id, {
                "status": STATUS_RESOLVED, "verdict": "fraud" if verdict.fraud else "legit",
                "source": SOURCE_ANALYST, "resolved_at": repr(now_s)})
            if verdict.fraud:
                self.blocks.block(verdict.card, now_s)

    async def run(self, start_s: float, end_s: float, progress: Progress) -> list[bytes]:
        """Warm-up, then the period; the decision JSON of every row of the period, in row order."""
        self.feed.add(chargebacks(self.rows, self.settings.labels_delay, self.settings.seed))
        t = self.t
        first = int(np.searchsorted(t, start_s, side="left"))
        progress.phase(f"warm-up: {first:,} transactions before {self.settings.start} through the worker core")
        lo = 0
        bounds = np.arange(t[0] if len(t) else start_s, start_s, WARMUP_CHUNK_S)[1:].tolist() + [start_s]
        for bound in bounds:
            hi = int(np.searchsorted(t, bound, side="left"))
            self.blocks.lift_expired(bound)
            await self.step(lo, hi, bound)
            lo = hi
        n = len(t) - first
        decided: list[bytes] = []
        s = self.settings
        progress.phase(f"deciding {n:,} transactions {s.start}..{s.end} in steps of at most {s.step_s:g} s"
                       + ("" if self.analysts is None else f", analysts {s.analysts}"))
        now = start_s
        with progress.steps(n, "backtest", unit="tx") as advance:
            while now < end_s:
                bound = min(now + s.step_s, end_s,
                            self.analysts.next_event_s(now) if self.analysts is not None else np.inf)
                self.blocks.lift_expired(now)
                hi = int(np.searchsorted(t, bound, side="left"))
                outcome = await self.step(lo, hi, bound)
                raw = [value for _, value in outcome.decisions]
                decided += raw
                if self.analysts is not None and hi > lo:
                    self._queue_reviews(lo, raw, bound)
                advance(hi - lo)
                lo = hi
                await self.analysts_work(bound)
                now = bound
        return decided

    def _queue_reviews(self, lo: int, raw: list[bytes], bound_s: float) -> None:
        items = []
        for i, value in enumerate(raw):
            if b'"decision":"REVIEW"' not in value:
                continue
            d = orjson.loads(value)
            items.append(ReviewItem(int(d["transaction_id"]), int(d["customer_id"]), int(d["terminal_id"]),
                                    float(d["event_timestamp"]), float(d["risk"]), float(d["amount"]),
                                    bool(self.fraud[lo + i])))
        if items:
            self.analysts.add(items, bound_s)  # type: ignore[union-attr]


def blocked_by_list(decisions: pd.DataFrame) -> np.ndarray:
    """Per row of :attr:`BacktestRun.decisions`, whether the live block list blocked it (its reasons name it)."""
    return np.fromiter((REASON_BLOCKED_CARD in reasons for reasons in decisions["REASONS"]), dtype=bool,
                       count=len(decisions))


def allowed_over_budget(decisions: pd.DataFrame) -> np.ndarray:
    """Per row of :attr:`BacktestRun.decisions`, whether its REVIEW became ALLOW because the day's review budget
    was spent (its reasons say so)."""
    return np.fromiter((REASON_REVIEW_BUDGET in reasons for reasons in decisions["REASONS"]), dtype=bool,
                       count=len(decisions))


def run_backtest(frame: pd.DataFrame, cascade: Cascade, settings: BacktestSettings,
                 progress: Progress = SILENT) -> BacktestRun:
    """Run the period of ``frame`` (handbook columns with ``TX_FRAUD``) through ``cascade`` (a trained one)."""
    rows = _ordered(frame, settings, warmup_days(settings, cascade))
    loop = _Loop(rows, cascade, settings)
    start_s = float(datetime_to_epoch_seconds(pd.Series([settings.start]))[0])
    end_s = float(datetime_to_epoch_seconds(pd.Series([settings.end]))[0])
    decided = asyncio.run(loop.run(start_s, end_s, progress))
    first = len(rows) - len(decided)
    records = [orjson.loads(value) for value in decided]
    period = rows.iloc[first:]
    in_test = known_compromised_period_rows((loop.t // DAY_S).astype(np.int64),
                                            rows[CUSTOMER_ID].to_numpy(dtype=np.int64), loop.fraud,
                                            int(start_s // DAY_S))[first:]
    decisions = pd.DataFrame({
        TRANSACTION_ID: period[TRANSACTION_ID].to_numpy(), TX_DATETIME: period[TX_DATETIME].to_numpy(),
        CUSTOMER_ID: period[CUSTOMER_ID].to_numpy(), CARD_ID: loop.card_of_row[first:],
        TERMINAL_ID: period[TERMINAL_ID].to_numpy(), TX_AMOUNT: period[TX_AMOUNT].to_numpy(),
        TX_FRAUD: loop.fraud[first:].astype(np.int8),
        "RISK": np.array([r["risk"] for r in records], dtype=np.float64),
        "DECISION": [r["decision"] for r in records], "STAGE": [r["stage"] for r in records],
        "LIGHT_SCORE": np.array([_none_to_nan(r["light_score"]) for r in records], dtype=np.float64),
        "ANOMALY_SCORE": np.array([_none_to_nan(r["anomaly_score"]) for r in records], dtype=np.float64),
        "HEAVY_SCORE": np.array([_none_to_nan(r["heavy_score"]) for r in records], dtype=np.float64),
        "REASONS": [tuple(r["reasons"]) for r in records],
        "MODEL_VERSION": [r["model_version"] for r in records], HANDBOOK_TEST: in_test,
    })
    if TX_FRAUD_SCENARIO in period.columns:  # simulated data: which attack each fraud belongs to
        decisions[TX_FRAUD_SCENARIO] = period[TX_FRAUD_SCENARIO].to_numpy()
    return BacktestRun(settings, cascade.version, decisions, loop.verdicts, loop.analysts,
                       dict(loop.blocks.blocked_at), loop.labels_sent, loop.blocks.events)
