"""Closed-loop backtest: a period of history replayed in event time through the worker's scoring path.

The loop advances in steps of event time (at most ``step_s``, and ending where an analyst case becomes ready).
Per step ``[a, b)``:

1. the labels known before ``b`` (chargebacks from the label model, analyst verdicts given so far) are learned
   into terminal state; features count each only from its ``known_at``, so learning it early changes nothing
   before then;
2. the step's transactions get their features incrementally from per-customer and per-terminal state
   (:class:`~fraudstream.detectors.features.online.IncrementalFeatures`, the worker's code) and ONE vectorized
   cascade call (rules, light + anomaly, heavy, policy), as a worker micro-batch does;
3. the live block list applies: a card with a confirmed fraud (chargeback or analyst verdict) known at or before
   a transaction's time is blocked (stage RULES, risk 1.0, reason ``rule:blocked_card``; see ``block_mode``);
4. REVIEW decisions join their card's case; the simulated analysts work the ready cases
   (:mod:`fraudstream.training.analysts`) at ``b``; their verdicts become labels known from ``b``.

Rows in the warm-up before ``start`` (by default as far back as the features look, 38 days) feed the features
only (with their chargebacks), so the period starts in steady state.  No broker and no Redis: state lives in dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from fraudstream.detectors.cascade.cascade import Cascade
from fraudstream.detectors.cascade.types import CascadeResult, Decision, Stage
from fraudstream.detectors.features.definition import DAY_S
from fraudstream.detectors.features.online import IncrementalFeatures
from fraudstream.detectors.schema import (
    CUSTOMER_ID,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
    LabelEvent,
    TransactionBatch,
    datetime_to_epoch_seconds,
)
from fraudstream.training.analysts import AnalystSettings, ReviewItem, SimulatedAnalysts, Verdict
from fraudstream.training.label_model import ChargebackDelay, chargeback_known_at
from fraudstream.training.progress import SILENT, Progress
from fraudstream.training.splits import known_compromised_period_rows

#: Reason of a decision made by the live block list of confirmed-fraud cards.
REASON_BLOCKED_CARD = "rule:blocked_card"
#: Column of the decisions frame: the row is in the period's handbook-style test set.
HANDBOOK_TEST = "HANDBOOK_TEST"
SOURCE_CHARGEBACK = "chargeback"
SOURCE_ANALYST = "analyst"
#: Default longest event-time step (s): the loop's largest micro-batch span.
DEFAULT_STEP_S = 3_600.0
#: Block list modes (see :class:`BacktestSettings`).
BLOCK_REISSUE, BLOCK_CARD = "reissue", "card"
BLOCK_MODES = (BLOCK_REISSUE, BLOCK_CARD)
#: Default time a confirmed-fraud card stays blocked in card mode (days).
DEFAULT_BLOCK_DAYS = 14.0
#: Warm-up rows are fed to the features in chunks of this many (s of event time).
WARMUP_CHUNK_S = DAY_S


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
    block_mode : :data:`BLOCK_REISSUE` (default: a confirmed card is replaced; its old number, which only the
        fraudster still uses, is blocked for good) or :data:`BLOCK_CARD` (every later transaction of the card id
        is blocked for ``block_days``, as the live block list does; simulated data never reissues a card, so
        this also blocks the customer's later legitimate transactions).
    block_days : how long a card stays blocked in :data:`BLOCK_CARD` mode (days; 0 = for ever).
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


@dataclass
class BacktestRun:
    """What one backtest produced.

    decisions : one row per transaction of the period in event-time order: ``TRANSACTION_ID``, ``TX_DATETIME``,
        ``CUSTOMER_ID``, ``TERMINAL_ID``, ``TX_AMOUNT``, ``TX_FRAUD``, ``RISK``, ``DECISION``, ``STAGE`` (names),
        ``LIGHT_SCORE``, ``ANOMALY_SCORE``, ``HEAVY_SCORE``, ``REASONS`` (tuples), ``MODEL_VERSION``, and
        ``HANDBOOK_TEST`` (the row is in the handbook-style test set of the period, see
        :func:`fraudstream.training.splits.known_compromised_period_rows`).
    verdicts : every analyst verdict, in the order given.
    analysts : the analysts (their log), None without analysts.
    blocked_at : card -> time (epoch s) from which it was blocked.
    """

    settings: BacktestSettings
    model_version: str
    decisions: pd.DataFrame
    verdicts: list[Verdict]
    analysts: SimulatedAnalysts | None
    blocked_at: dict[int, float]


class _LabelQueue:
    """Labels in ``known_at`` order, handed out once known before a time."""

    def __init__(self) -> None:
        self._labels: list[LabelEvent] = []
        self._next = 0

    def extend(self, labels: list[LabelEvent]) -> None:
        self._labels = self._labels[self._next:] + labels
        self._labels.sort(key=lambda lab: lab.known_at)
        self._next = 0

    def known_before(self, time_s: float) -> list[LabelEvent]:
        start = self._next
        while self._next < len(self._labels) and self._labels[self._next].known_at < time_s:
            self._next += 1
        return self._labels[start:self._next]


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


class _BlockList:
    """Cards with a confirmed fraud, blocked from the time it was known (epoch s).

    ``mode`` :data:`BLOCK_CARD` blocks every later transaction of the card for ``block_s`` (s), as the live
    block list does with a card number; :data:`BLOCK_REISSUE` stands for the card being replaced: the old
    number is dead for good (every later transaction on it is the fraudster's) while the customer goes on with
    a new one.  Simulated data keeps one id per customer, so the fraudulent later rows stand for the old card.
    """

    def __init__(self, mode: str, block_s: float) -> None:
        self.mode = mode
        self.block_s = block_s if mode == BLOCK_CARD else np.inf
        self.blocked_at: dict[int, float] = {}  # card -> start of its latest block

    def learn(self, labels: list[LabelEvent]) -> None:
        """Block the cards of fraud labels (a label inside a running block does not extend it)."""
        for label in labels:
            if not label.fraud:
                continue
            since = self.blocked_at.get(label.customer_id)
            if since is None or label.known_at < since or label.known_at >= since + self.block_s:
                self.blocked_at[label.customer_id] = label.known_at

    def blocked(self, batch: TransactionBatch, fraud: np.ndarray) -> np.ndarray:
        """Which transactions of ``batch`` the list blocks (``fraud``: their labels, used in reissue mode)."""
        get, block_s = self.blocked_at.get, self.block_s
        flags = []
        for card, t in zip(batch.customer_id.tolist(), batch.timestamp.tolist()):
            since = get(card)
            flags.append(since is not None and since <= t < since + block_s)
        out = np.array(flags, dtype=bool)
        return out & fraud if self.mode == BLOCK_REISSUE else out


def _decide(cascade: Cascade, X: np.ndarray, batch: TransactionBatch, block_list: _BlockList,
            fraud: np.ndarray) -> CascadeResult:
    """One vectorized cascade call, then the live block list (blocked cards: BLOCK by rule, risk 1.0)."""
    result = cascade.score(X, batch)
    blocked = block_list.blocked(batch, fraud)
    if not blocked.any():
        return result
    decision, stage, risk = result.decision.copy(), result.stage.copy(), result.risk.copy()
    decision[blocked], stage[blocked], risk[blocked] = Decision.BLOCK, Stage.RULES, 1.0
    reasons = list(result.reasons)
    for i in np.flatnonzero(blocked).tolist():
        reasons[i] = (REASON_BLOCKED_CARD,)
    return replace(result, decision=decision, stage=stage, risk=risk, reasons=reasons)


def run_backtest(frame: pd.DataFrame, cascade: Cascade, settings: BacktestSettings,
                 progress: Progress = SILENT) -> BacktestRun:
    """Run the period of ``frame`` (handbook columns with ``TX_FRAUD``) through ``cascade`` (a trained one)."""
    rows = _ordered(frame, settings, warmup_days(settings, cascade))
    features = IncrementalFeatures(cascade.feature_config)
    customers: dict = {}
    terminals: dict = {}
    labels, block_list = _LabelQueue(), _BlockList(
        settings.block_mode, settings.block_days * DAY_S if settings.block_days else np.inf)
    labels.extend(chargebacks(rows, settings.labels_delay, settings.seed))
    analysts = SimulatedAnalysts(settings.analysts) if settings.analysts is not None else None
    verdicts: list[Verdict] = []

    batch_all = TransactionBatch.from_frame(rows)
    t = batch_all.timestamp
    fraud = rows[TX_FRAUD].to_numpy().astype(bool)
    start_s = float(datetime_to_epoch_seconds(pd.Series([settings.start]))[0])
    end_s = float(datetime_to_epoch_seconds(pd.Series([settings.end]))[0])
    first = int(np.searchsorted(t, start_s, side="left"))

    def learn(before_s: float) -> None:
        known = labels.known_before(before_s)
        if known:
            features.learn_labels(known, terminals)
            block_list.learn(known)

    warm_bounds = np.arange(t[0] if len(t) else start_s, start_s, WARMUP_CHUNK_S)[1:].tolist() + [start_s]
    lo = 0
    progress.phase(f"warm-up: {first:,} transactions before {settings.start} feed the features")
    for bound in warm_bounds:
        hi = int(np.searchsorted(t, bound, side="left"))
        learn(bound)
        if hi > lo:
            features.transform(batch_all.take(np.arange(lo, hi)), customers, terminals)
        lo = hi

    n = len(rows) - first
    out_decision = np.empty(n, dtype=np.int8)
    out_stage = np.empty(n, dtype=np.int8)
    out_risk, out_light, out_anomaly, out_heavy = (np.empty(n) for _ in range(4))
    out_reasons: list[tuple[str, ...]] = []
    progress.phase(f"deciding {n:,} transactions {settings.start}..{settings.end} in steps of at most "
                   f"{settings.step_s:g} s" + ("" if analysts is None else f", analysts {settings.analysts}"))
    lo, now = first, start_s
    with progress.steps(n, "backtest", unit="tx") as advance:
        while now < end_s:
            bound = min(now + settings.step_s, end_s,
                        analysts.next_event_s(now) if analysts is not None else np.inf)
            learn(bound)
            hi = int(np.searchsorted(t, bound, side="left"))
            if hi > lo:
                index = np.arange(lo, hi)
                batch = batch_all.take(index)
                result = _decide(cascade, features.transform(batch, customers, terminals), batch, block_list,
                                 fraud[index])
                k = slice(lo - first, hi - first)
                out_decision[k], out_stage[k], out_risk[k] = result.decision, result.stage, result.risk
                out_light[k], out_anomaly[k] = result.light_score, result.anomaly_score
                out_heavy[k] = result.heavy_score
                out_reasons += result.reasons
                if analysts is not None:
                    review = np.flatnonzero(result.decision == Decision.REVIEW)
                    analysts.add([ReviewItem(int(batch.transaction_id[i]), int(batch.customer_id[i]),
                                             int(batch.terminal_id[i]), float(batch.timestamp[i]),
                                             float(result.risk[i]), float(batch.amount[i]), bool(fraud[lo + i]))
                                  for i in review.tolist()], bound)
                advance(hi - lo)
                lo = hi
            if analysts is not None:
                given = analysts.work(bound)
                if given:
                    verdicts += given
                    labels.extend(verdict_labels(given))
            now = bound

    period = rows.iloc[first:]
    in_test = known_compromised_period_rows((t // DAY_S).astype(np.int64), batch_all.customer_id, fraud,
                                            int(start_s // DAY_S))[first:]
    decisions = pd.DataFrame({
        TRANSACTION_ID: period[TRANSACTION_ID].to_numpy(), TX_DATETIME: period[TX_DATETIME].to_numpy(),
        CUSTOMER_ID: period[CUSTOMER_ID].to_numpy(), TERMINAL_ID: period[TERMINAL_ID].to_numpy(),
        TX_AMOUNT: period[TX_AMOUNT].to_numpy(), TX_FRAUD: fraud[first:].astype(np.int8),
        "RISK": out_risk, "DECISION": [Decision(d).name for d in out_decision.tolist()],
        "STAGE": [Stage(s).name for s in out_stage.tolist()], "LIGHT_SCORE": out_light,
        "ANOMALY_SCORE": out_anomaly, "HEAVY_SCORE": out_heavy, "REASONS": out_reasons,
        "MODEL_VERSION": cascade.version, HANDBOOK_TEST: in_test,
    })
    return BacktestRun(settings, cascade.version, decisions, verdicts, analysts, dict(block_list.blocked_at))
