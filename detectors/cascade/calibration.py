"""Choosing the cascade's thresholds on a validation period, and measuring the resulting policy.

Rules (all measured on validation rows, with the scores the deployed models give them):

* ``t_block_light``: at first the lowest light score whose block region ``light >= t`` has precision >=
  ``block_precision`` and holds at least ``min_block_rows`` rows (never blocks when no such threshold exists).
  Precision here is the lower end of its one-sided ``block_confidence`` (default 0.9) Wilson score interval, not
  the share measured: the lowest threshold whose measured precision just reaches the target is the one whose
  estimate is most likely too high (of the many thresholds tried, it is picked because it reached it), and out of
  sample such regions fell short (handbook test folds: 93.8% for the heavy stage's BLOCKs calibrated to 95%).
  With the bound, a region of 200 validation rows needs about 97% measured, one of 1,000 about 96%; a region of
  fewer than 32 rows can never block at 95% (``block_confidence = 0`` measures the plain share).
  That region is cumulative: its lower end holds the rows the light model is unsure of (on the seed-0 validation
  week, the last hundred of its 465 rows were 80% frauds, its first three hundred 99%), carried by the sure ones
  above.  So the light stage may keep only its sure part and leave the rest to the heavy model, which reads more
  (:func:`block_split`): ``split_candidates`` higher light thresholds (quantiles of the light score in the
  first region) are tried, each as a complete policy with the heavy thresholds chosen for the rows it routes;
  among the splits whose two BLOCK regions together block at least ``1 - block_split_loss`` of the most frauds
  any split blocks, the one that blocks the fewest legitimate rows wins (then the lowest light threshold).  A
  split whose routed rows hold too few frauds to measure the heavy thresholds (see below) is not tried.
  ``split_candidates = 0`` keeps the first threshold.
* ``t_anomaly_allow`` = ``anomaly_allow_max`` (default 0.99: the light stage may not ALLOW a row more anomalous
  than 99% of legitimate training traffic).
* ``t_allow_light``: the highest light score such that the light ALLOW region (``light <= t`` and anomaly <=
  ``t_anomaly_allow``) costs at most ``allow_catch_loss`` (default 2%) of the frauds the cascade catches
  (BLOCK or REVIEW) when no row is allowed early and every undecided row goes to the heavy model.  Candidates
  are ``allow_candidates`` quantiles of the light score among eligible rows; for each, the heavy thresholds
  below are chosen again for the rows that remain, so the comparison is between two complete policies.
  Everything neither blocked nor allowed by the light stage goes to the heavy model.
* ``t_block_heavy``: like ``t_block_light`` (the same confidence bound), on the heavy model's scores of the rows
  routed to it.
* ``t_anomaly_review``, in two steps.  First at least ``anomaly_review_min`` (default 0.99), raised until
  anomaly-only reviews use at most ``anomaly_review_share`` (default 0.75) of the capacity: the share kept for the
  detector while ``t_review`` below is chosen.  Then, once the heavy REVIEW region is set, lowered (never below
  ``anomaly_review_min``) to spend the capacity the supervised stages leave unused on the most anomalous rows:
  the lowest value at which the whole REVIEW volume stays within the capacity and the legitimate
  validation rows flagged (BLOCK or REVIEW, every stage) stay at most ``max_legit_flag_rate`` (default 1%) of
  the legitimate rows.  ``max_legit_flag_rate = 0`` keeps the first step's value.
* ``t_review``: the heavy stage REVIEWs only where it is not confident either way: the lowest heavy score
  (<= ``t_block_heavy``) whose region ``t_review <= heavy < t_block_heavy`` has precision >=
  ``review_min_precision`` (default 0.10: at least one fraud in ten reviewed rows) and whose REVIEW volume stays
  within the capacity.  Below it the heavy stage ALLOWs.

The capacity these regions fill on validation is ``review_capacity`` cards a day less ``review_headroom`` (default
15%, :attr:`CalibrationTargets.calibrated_capacity`): an attack's cards add to a day's review load on top of the
usual traffic (on the seed-0 novel-attack week, 26 of 106 review cards a day were attacked cards when the regions
filled all of the capacity on validation), so the usual load is kept below what the analysts can take.

Too little validation data: when the rows routed to the heavy model hold fewer than ``min_threshold_frauds``
(default 20) frauds, precision cannot be measured there, so ``t_block_heavy`` falls back to
``default_block_heavy`` (0.95) and the precision part of ``t_review`` to ``default_review`` (0.10).  Both are
calibrated fraud probabilities (the heavy score is one), i.e. the targets themselves read on the calibrated
scale, instead of never blocking or reviewing every routed row.  :func:`choose_thresholds` reports each fallback
(``fallbacks``) so that training can warn.

REVIEW volume is the number of distinct customers with a REVIEW decision per UTC day of the validation period,
and the capacity is checked against the *maximum* over the days (``capacity_statistic="max"``; ``"mean"`` uses the
average instead).  Burst-rule escalations are not counted (rules are configured apart from the models).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from fraudstream.detectors.cascade.policy import ANOMALY, HEAVY, LIGHT, NEVER, CascadePolicy, Thresholds
from fraudstream.detectors.cascade.types import Decision, Stage

DAY_S = 86_400.0


#: Largest share of legitimate transactions the cascade may flag (BLOCK or REVIEW): the anomaly reviews fill the
#: review capacity up to it in calibration, and the novel-attack report holds the cascade to it.
MAX_LEGIT_FLAG_RATE = 0.01


@dataclass(frozen=True)
class CalibrationTargets:
    """Constraints the thresholds must meet on validation (see the module docstring)."""

    block_precision: float = 0.95
    block_confidence: float = 0.9  # one-sided confidence of the precision bound a BLOCK region must reach (0: none)
    min_block_rows: int = 5
    review_capacity: float = 100.0  # cards (distinct customers) a day
    capacity_statistic: str = "max"  # "max" or "mean" over the validation days
    allow_catch_loss: float = 0.02  # share of caught frauds the light ALLOW region may cost
    allow_candidates: int = 40  # quantiles of the light score tried as t_allow_light
    anomaly_allow_max: float = 0.99
    anomaly_review_min: float = 0.99  # lowest t_anomaly_review (the detector's legit-rank scale)
    # capacity share kept for anomaly-only reviews while t_review is chosen.  On the seed-0 novel-attack week
    # (families 4 / 6 / 7 flagged, known frauds flagged): 0.25 74.5% / 84.5% / 55.2%; 0.5 79.0% / 89.8% / 69.0%,
    # 72.2%; 0.75 80.9% / 92.0% / 75.9%, 71.0%; 1.0 83.4% / 92.5% / 82.8% (the detector alone's figures) but
    # 63.4%: the heavy stage then reviews almost nothing
    anomaly_review_share: float = 0.75
    review_headroom: float = 0.15  # capacity share left free on validation for the cards an attack adds
    max_legit_flag_rate: float = MAX_LEGIT_FLAG_RATE  # legit rows flagged up to which anomaly reviews fill capacity
    review_min_precision: float = 0.10  # precision the heavy REVIEW region must keep
    heavy_allow_fraud_rate: float = 0.0  # the heavy stage ALLOWs the bottom of its band up to this fraud share (0: off)
    split_candidates: int = 10  # higher light block thresholds tried, leaving the light stage's unsure part to heavy
    block_split_loss: float = 0.01  # share of the most frauds blocked a split may give up for fewer legit blocked
    min_threshold_frauds: int = 20  # routed validation frauds needed to measure the heavy thresholds
    default_block_heavy: float = 0.95  # t_block_heavy when they are too few (calibrated probability)
    default_review: float = 0.10  # precision part of t_review when they are too few (calibrated probability)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def calibrated_capacity(self) -> float:
        """Review cards a day the REVIEW regions may fill on validation: the capacity less its headroom."""
        return self.review_capacity * (1.0 - self.review_headroom)


def precision_lower_bound(tp: np.ndarray, count: np.ndarray, confidence: float) -> np.ndarray:
    """Lower end of the one-sided ``confidence`` Wilson score interval of the precision ``tp / count`` (elementwise;
    ``count`` > 0).  ``confidence`` <= 0.5 gives the measured share itself."""
    p = np.asarray(tp, dtype=np.float64) / count
    if confidence <= 0.5:
        return p
    z = NormalDist().inv_cdf(confidence)
    z2n = z * z / count
    return np.clip((p + z2n / 2 - z * np.sqrt(p * (1 - p) / count + z2n / (4 * count))) / (1 + z2n), 0.0, p)


def _cumulative_regions(scores: np.ndarray, y: np.ndarray, descending: bool = True
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The regions ``scores >= t`` (``descending``; else ``scores <= t``), one per distinct score from the highest
    down (else the lowest up; a threshold selects every row with that score): each region's last score (its lowest,
    else its highest), rows and frauds."""
    order = np.argsort(-scores if descending else scores, kind="stable")
    s = scores[order]
    cuts = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    return s[cuts], cuts + 1, np.cumsum(y[order].astype(np.float64))[cuts]


def block_threshold(scores: np.ndarray, y: np.ndarray, precision: float, min_rows: int = 1,
                    confidence: float = 0.0) -> float:
    """Lowest ``t`` whose region ``scores >= t`` holds at least ``min_rows`` rows and a precision >= ``precision``:
    the measured share, or with ``confidence`` > 0.5 the lower end of its one-sided Wilson interval
    (:func:`precision_lower_bound`); else NEVER."""
    if scores.size == 0:
        return NEVER
    lowest, rows, frauds = _cumulative_regions(scores, y)
    ok = (rows >= min_rows) & (precision_lower_bound(frauds, rows, confidence) >= precision)
    if not ok.any():
        return NEVER
    return float(lowest[np.flatnonzero(ok)[-1]])


def strongest_block_region(scores: np.ndarray, y: np.ndarray, confidence: float) -> dict[str, float]:
    """The region ``scores >= t`` whose precision bound (:func:`precision_lower_bound`) is the highest: its
    ``rows``, ``frauds`` and ``bound`` (all 0 when there are no scores).  What training reports when a stage has no
    BLOCK region: how far the best one was from the target."""
    if scores.size == 0:
        return {"rows": 0, "frauds": 0, "bound": 0.0}
    _, rows, frauds = _cumulative_regions(scores, y)
    bounds = precision_lower_bound(frauds, rows, confidence)
    best = int(np.argmax(bounds))
    return {"rows": int(rows[best]), "frauds": int(frauds[best]), "bound": float(bounds[best])}


def confident_allow_threshold(scores: np.ndarray, y: np.ndarray, fraud_rate: float) -> float:
    """Highest ``t`` such that the rows with ``scores < t`` hold at most ``fraud_rate`` frauds (as a share of
    them); -1 (nothing below) when even the lowest-scored rows hold more."""
    if scores.size == 0:
        return -1.0
    highest, rows, frauds = _cumulative_regions(scores, y, descending=False)
    ok = np.flatnonzero(frauds / rows <= fraud_rate)
    if not ok.size:
        return -1.0
    k = int(ok[-1])
    return float(highest[k + 1]) if k + 1 < highest.size else float(np.nextafter(highest[k], np.inf))


def allow_threshold(light: np.ndarray, y: np.ndarray, eligible: np.ndarray, max_frauds: float) -> float:
    """Highest ``t`` such that eligible rows with ``light <= t`` hold at most ``max_frauds`` frauds; -1 if none."""
    if not eligible.any():
        return -1.0
    highest, _, frauds = _cumulative_regions(light[eligible], y[eligible], descending=False)
    ok = frauds <= max_frauds
    if not ok.any():
        return -1.0
    return float(highest[np.flatnonzero(ok)[-1]])


def daily_cards(mask: np.ndarray, customer_id: np.ndarray, day: np.ndarray, n_days: int) -> np.ndarray:
    """Distinct customers among ``mask`` rows per day (length ``n_days``; ``day`` in 0..n_days-1).

    Sorted by (day, customer) with one ``lexsort``; ``np.unique(..., axis=0)`` on the pairs gave the same counts
    about ten times slower (it sorts the rows as opaque records), and calibration asks this hundreds of times.
    """
    if not mask.any():
        return np.zeros(n_days)
    d, c = day[mask], customer_id[mask]
    order = np.lexsort((c, d))
    d, c = d[order], c[order]
    first = np.empty(d.size, dtype=bool)  # the first row of each (day, customer) pair
    first[0] = True
    np.not_equal(d[1:], d[:-1], out=first[1:])
    first[1:] |= c[1:] != c[:-1]
    return np.bincount(d[first], minlength=n_days).astype(np.float64)


def _volume(mask: np.ndarray, customer_id: np.ndarray, day: np.ndarray, n_days: int, statistic: str) -> float:
    per_day = daily_cards(mask, customer_id, day, n_days)
    return float(per_day.max() if statistic == "max" else per_day.mean())


def _lowest_fitting(candidates: np.ndarray, volume_at) -> float:
    """Smallest candidate (sorted ascending) whose volume fits, volume non-increasing in the threshold."""
    lo, hi = 0, candidates.size - 1
    if hi < 0 or not volume_at(candidates[hi]):
        return NEVER
    while lo < hi:
        mid = (lo + hi) // 2
        if volume_at(candidates[mid]):
            hi = mid
        else:
            lo = mid + 1
    return float(candidates[lo])


def _day_index(timestamp: np.ndarray) -> tuple[np.ndarray, int]:
    day = np.floor(np.asarray(timestamp, dtype=np.float64) / DAY_S).astype(np.int64)
    if day.size == 0:
        return day, 1
    day -= day.min()
    return day, int(day.max()) + 1


def light_block_candidates(light: np.ndarray, y: np.ndarray, targets: CalibrationTargets) -> np.ndarray:
    """Light BLOCK thresholds a split may use, ascending: the first one (:func:`block_threshold`) and up to
    ``split_candidates`` higher ones, quantiles of the light score in its region (module docstring)."""
    first = block_threshold(light, y, targets.block_precision, targets.min_block_rows, targets.block_confidence)
    region = light[light >= first]
    if targets.split_candidates <= 0 or region.size == 0:
        return np.array([first])
    levels = np.arange(targets.split_candidates + 1) / (targets.split_candidates + 1)
    return np.unique(np.quantile(region, levels, method="lower"))


def block_split(blocked_frauds: np.ndarray, blocked_legit: np.ndarray, loss: float) -> int:
    """Index of the split to keep: among those blocking at least ``1 - loss`` of the most frauds any blocks, the
    fewest legitimate rows blocked, then the most frauds, then the lowest index (the lowest light threshold)."""
    frauds, legit = np.asarray(blocked_frauds, dtype=np.float64), np.asarray(blocked_legit, dtype=np.float64)
    ok = np.flatnonzero(frauds >= (1.0 - loss) * frauds.max())
    return int(min(ok, key=lambda i: (legit[i], -frauds[i], i)))


def choose_thresholds(
    light: np.ndarray,
    anomaly: np.ndarray,
    heavy: np.ndarray,
    y: np.ndarray,
    customer_id: np.ndarray,
    timestamp: np.ndarray,
    targets: CalibrationTargets = CalibrationTargets(),
    t_allow_light: float | None = None,
    fallbacks: list[str] | None = None,
    t_block_light: float | None = None,
) -> Thresholds:
    """Thresholds meeting ``targets`` on validation scores (all arrays row-aligned; ``timestamp`` in epoch s).

    A given ``t_allow_light`` is kept as is (the other thresholds are chosen for it); -1 disables the light ALLOW.
    A given ``t_block_light`` is kept too (no split is searched).  ``fallbacks``, when given, receives one line per
    threshold of the result set to its default because the validation data was too small (module docstring).
    """
    if targets.capacity_statistic not in ("max", "mean"):
        raise ValueError(f"capacity_statistic: expected 'max' or 'mean', got {targets.capacity_statistic!r}")
    y = np.asarray(y).astype(np.int8)
    day, n_days = _day_index(timestamp)

    scores = {LIGHT: light, ANOMALY: anomaly, HEAVY: heavy}
    t_anomaly_allow = float(targets.anomaly_allow_max)
    notes: dict[Thresholds, list[str]] = {}

    def thresholds_for(t_allow: float, t_block: float) -> Thresholds:
        first = CascadePolicy(Thresholds(t_block_light=t_block, t_allow_light=t_allow,
                                         t_anomaly_allow=t_anomaly_allow))
        routing = first.first_pass(scores)
        defaults: list[str] = []
        heavy_part = _heavy_thresholds(anomaly, heavy, y, customer_id, day, n_days, targets, routing.to_heavy,
                                       defaults, light_block=routing.decision == Decision.BLOCK)
        out = Thresholds(t_block_light=t_block, t_allow_light=t_allow, t_anomaly_allow=t_anomaly_allow,
                         **heavy_part)
        notes[out] = defaults
        return out

    def reported(th: Thresholds) -> Thresholds:
        if fallbacks is not None:
            fallbacks.extend(notes.get(th, []))
        return th

    fraud = y == 1

    def decided(th: Thresholds) -> np.ndarray:
        decision, _ = CascadePolicy(th).decide(scores)
        return decision

    if t_block_light is None:
        candidates = light_block_candidates(light, y, targets)
        tried = [thresholds_for(-1.0, float(t)) for t in candidates] if candidates.size > 1 else []
        # a split whose heavy thresholds would be defaults (too few routed frauds to measure them) is not one
        kept = [0] + [i for i in range(1, len(tried)) if not notes[tried[i]]]
        if len(kept) > 1:
            blocked = [decided(tried[i]) == Decision.BLOCK for i in kept]
            blocked_frauds = np.array([int((b & fraud).sum()) for b in blocked])
            blocked_legit = np.array([int((b & ~fraud).sum()) for b in blocked])
            t_block_light = float(candidates[kept[block_split(blocked_frauds, blocked_legit,
                                                              targets.block_split_loss)]])
        else:
            t_block_light = float(candidates[0])
    if t_allow_light is not None:
        return reported(thresholds_for(float(t_allow_light), t_block_light))

    def caught(th: Thresholds) -> int:
        return int(((decided(th) != Decision.ALLOW) & fraud).sum())

    # rows the light stage would allow with no score limit: the candidates for t_allow_light
    widest = CascadePolicy(Thresholds(t_block_light=t_block_light, t_allow_light=1.0, t_anomaly_allow=t_anomaly_allow))
    eligible = widest.first_pass(scores).decision == Decision.ALLOW
    baseline = thresholds_for(-1.0, t_block_light)  # no light ALLOW: every undecided row goes to the heavy model
    floor = (1.0 - targets.allow_catch_loss) * caught(baseline)
    best = baseline
    if eligible.any():
        levels = np.linspace(0.0, 1.0, targets.allow_candidates + 1)[1:]
        for t_allow in np.unique(np.quantile(light[eligible], levels, method="lower")):
            candidate = thresholds_for(float(t_allow), t_block_light)
            if caught(candidate) >= floor:
                best = candidate
    return reported(best)


def _heavy_thresholds(anomaly, heavy, y, customer_id, day, n_days, targets: CalibrationTargets,
                      to_heavy: np.ndarray, defaults: list[str], light_block: np.ndarray) -> dict[str, float]:
    """Heavy-stage thresholds for the rows a given light stage leaves undecided (``to_heavy``; it BLOCKs
    ``light_block``); the thresholds set to their defaults for lack of data are described in ``defaults``."""
    stat = targets.capacity_statistic
    routed_frauds = int(y[to_heavy].sum())
    too_few = routed_frauds < targets.min_threshold_frauds
    if too_few:
        t_block_heavy = float(targets.default_block_heavy)
        defaults.append(f"t_block_heavy = {t_block_heavy} (default): {routed_frauds} frauds among the "
                        f"{int(to_heavy.sum())} validation rows routed to the heavy model, fewer than "
                        f"{targets.min_threshold_frauds}")
    else:
        t_block_heavy = block_threshold(heavy[to_heavy], y[to_heavy], targets.block_precision,
                                        targets.min_block_rows, targets.block_confidence)
    not_blocked = to_heavy & (heavy < t_block_heavy)

    anomaly_budget = targets.anomaly_review_share * targets.calibrated_capacity
    candidates = np.unique(anomaly[not_blocked & (anomaly >= targets.anomaly_review_min)])
    t_anomaly_review = _lowest_fitting(
        candidates,
        lambda t: _volume(not_blocked & (anomaly >= t), customer_id, day, n_days, stat) <= anomaly_budget,
    )
    anomaly_review = not_blocked & (anomaly >= t_anomaly_review)

    heavy_candidates = np.unique(heavy[not_blocked])
    t_capacity = _lowest_fitting(
        heavy_candidates,
        lambda t: _volume(anomaly_review | (not_blocked & (heavy >= t)), customer_id, day, n_days, stat)
        <= targets.calibrated_capacity,
    )
    if too_few:
        t_confident = float(targets.default_review)
        defaults.append(f"t_review >= {t_confident} (default) for the same reason")
    else:
        t_confident = block_threshold(heavy[not_blocked], y[not_blocked], targets.review_min_precision)
    t_review = min(max(t_capacity, t_confident), t_block_heavy)
    if not too_few and targets.heavy_allow_fraud_rate > 0:
        t_review = min(max(t_review, confident_allow_threshold(heavy[not_blocked], y[not_blocked],
                                                               targets.heavy_allow_fraud_rate)), t_block_heavy)
    t_anomaly_review = _filling_anomaly_review(anomaly, heavy, y, customer_id, day, n_days, targets, not_blocked,
                                               light_block | (to_heavy & (heavy >= t_block_heavy)), t_review,
                                               t_anomaly_review)
    return {"t_block_heavy": t_block_heavy, "t_review": t_review, "t_anomaly_review": t_anomaly_review}


def _filling_anomaly_review(anomaly, heavy, y, customer_id, day, n_days, targets: CalibrationTargets,
                            not_blocked: np.ndarray, blocked: np.ndarray, t_review: float,
                            t_anomaly_review: float) -> float:
    """``t_anomaly_review`` lowered to fill the review capacity the heavy REVIEW region leaves unused, with at
    most ``max_legit_flag_rate`` of the legitimate rows flagged (module docstring); never raised."""
    legit = y == 0
    n_legit = int(legit.sum())
    if targets.max_legit_flag_rate <= 0 or n_legit == 0:
        return t_anomaly_review
    heavy_review = not_blocked & (heavy >= t_review)
    blocked_legit = int((blocked & legit).sum())
    allowed_legit = targets.max_legit_flag_rate * n_legit

    def fits(t: float) -> bool:
        review = heavy_review | (not_blocked & (anomaly >= t))
        return (blocked_legit + int((review & legit).sum()) <= allowed_legit
                and _volume(review, customer_id, day, n_days, targets.capacity_statistic)
                <= targets.calibrated_capacity)

    candidates = np.unique(anomaly[not_blocked & (anomaly >= targets.anomaly_review_min)
                                   & (anomaly < t_anomaly_review)])
    t_fill = _lowest_fitting(candidates, fits)
    return min(t_fill, t_anomaly_review)


def policy_report(
    light: np.ndarray,
    anomaly: np.ndarray,
    heavy: np.ndarray,
    y: np.ndarray,
    customer_id: np.ndarray,
    timestamp: np.ndarray,
    thresholds: Thresholds,
    use_anomaly: bool = True,
) -> dict[str, float]:
    """Validation figures of the policy (rules excluded): volumes, precisions, fraud caught, review cards/day."""
    y = np.asarray(y).astype(bool)
    decision, stage = CascadePolicy(thresholds, use_anomaly).decide({LIGHT: light, ANOMALY: anomaly, HEAVY: heavy})
    day, n_days = _day_index(timestamp)
    n, n_fraud = y.size, int(y.sum())

    def precision(mask: np.ndarray) -> float:
        return float(y[mask].mean()) if mask.any() else float("nan")

    block = decision == Decision.BLOCK
    review = decision == Decision.REVIEW
    allow = decision == Decision.ALLOW
    light_block = block & (stage == Stage.LIGHT)
    heavy_block = block & (stage == Stage.HEAVY)
    cards = daily_cards(review, customer_id, day, n_days)
    return {
        "rows": float(n),
        "frauds": float(n_fraud),
        "days": float(n_days),
        "share_to_heavy": float((stage == Stage.HEAVY).mean()) if n else float("nan"),
        "block_rows": float(block.sum()),
        "review_rows": float(review.sum()),
        "allow_rows": float(allow.sum()),
        "block_precision_light": precision(light_block),
        "block_precision_heavy": precision(heavy_block),
        "block_precision": precision(block),
        "review_precision": precision(review),
        "fraud_blocked_share": float((block & y).sum() / n_fraud) if n_fraud else float("nan"),
        "fraud_reviewed_share": float((review & y).sum() / n_fraud) if n_fraud else float("nan"),
        "fraud_allowed_share": float((allow & y).sum() / n_fraud) if n_fraud else float("nan"),
        "fraud_allowed_by_light_share": float((allow & y & (stage == Stage.LIGHT)).sum() / n_fraud)
        if n_fraud else float("nan"),
        "review_cards_per_day_mean": float(cards.mean()),
        "review_cards_per_day_max": float(cards.max()),
    }
