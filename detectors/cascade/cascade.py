"""The cascade: rules, then the registered scoring stages, and the policy that routes between them.

Stages (:mod:`fraudstream.detectors.cascade.registry`, contract in :mod:`fraudstream.detectors.cascade.stage`)
run in registry order: the screening stages (light model, anomaly detector) on every row, then the policy's
first pass (:class:`~fraudstream.detectors.cascade.policy.CascadePolicy`), then the routed stages (heavy model)
on the rows it left undecided, then the policy's second pass.

``risk`` (one calibrated fraud probability per row, whichever stage decided):

* RULES, block list / maximum amount: 1.0 (the rule is certain by definition);
* RULES, allow list: the light model's calibrated probability (kept for monitoring; the decision is ALLOW);
* LIGHT: the light model's calibrated probability;
* HEAVY: the heavy model's calibrated probability;
* RULES, burst escalation to REVIEW: the probability of the model that would have decided.

Reasons per row: the rules that fired, the threshold that settled the decision, and for BLOCK and REVIEW rows the
top 3 positive feature contributions of the latest stage that scored the row and can explain (the heavy model
when it ran, else the light model; XGBoost ``pred_contribs``), formatted ``FEATURE:+0.123`` (log-odds units).
Contributions are computed only for BLOCK and REVIEW rows, with XGBoost's approximate (per-path, Saabas)
contributions rather than exact TreeSHAP (``models.light.APPROXIMATE_CONTRIBUTIONS``): exact TreeSHAP cost most
of ``score`` at batch 1,000 (about 0.25 ms per flagged row on a 100-tree model).  ALLOW rows get the threshold
reason only.

Scoring is row-independent and deterministic: fixed thresholds, and every model scores a row the same way
whatever batch it is in.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import cast

import numpy as np

from fraudstream.detectors.cascade.policy import CascadePolicy, Thresholds
from fraudstream.detectors.cascade.registry import DEFAULT_STAGES, order_stages
from fraudstream.detectors.cascade.stage import ScoringStage
from fraudstream.detectors.cascade.types import CascadeResult, Decision
from fraudstream.detectors.features.definition import FeatureConfig
from fraudstream.detectors.models.anomaly import AnomalyModel, AnomalyStage
from fraudstream.detectors.models.heavy import HeavyModel, HeavyStage
from fraudstream.detectors.models.light import LightModel, LightStage
from fraudstream.detectors.rules import RuleSet
from fraudstream.detectors.schema import TransactionBatch

#: Feature contributions listed per BLOCK / REVIEW row.
TOP_CONTRIBUTIONS = 3
#: Keys of the per-stage timings :meth:`Cascade.score` reports for the shipped stages (seconds); a cascade with
#: other stages reports :meth:`Cascade.timing_stages`.
TIMING_STAGES = ("rules", *DEFAULT_STAGES, "policy", "reasons")


class _StageClock:
    """Adds the seconds elapsed since the previous lap to ``timings[stage]`` (no-op when ``timings`` is None)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.last = time.perf_counter() if timings is not None else 0.0

    def lap(self, stage: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[stage] = self.timings.get(stage, 0.0) + now - self.last
            self.last = now


class Cascade:
    """Scores micro-batches: ``score(X, batch)`` with ``X`` rows in ``feature_names`` order.

    Parameters
    ----------
    rules : the rule stage.
    stages : the fitted scoring stages (any order; kept in registry order).
    policy : routing thresholds and whether the anomaly score takes part.
    version : model version name, copied into every result.
    feature_names : names of ``X``'s columns, in order.
    feature_config : the feature configuration the models were trained with.
    metrics : training and validation figures (free-form, saved in the bundle manifest).
    """

    def __init__(
        self,
        rules: RuleSet,
        stages: Sequence[ScoringStage],
        policy: CascadePolicy,
        version: str,
        feature_names: list[str],
        feature_config: FeatureConfig,
        metrics: dict | None = None,
    ) -> None:
        self.rules = rules
        self.stages = order_stages(list(stages))
        self.policy = policy
        self.version = version
        self.feature_names = list(feature_names)
        self.feature_config = feature_config
        self.metrics = dict(metrics or {})

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def stage(self, name: str) -> ScoringStage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"cascade {self.version} has no stage {name!r} (stages: {list(self.stage_names)})")

    def timing_stages(self) -> tuple[str, ...]:
        """Keys of the per-stage timings :meth:`score` can report (seconds)."""
        return ("rules", *self.stage_names, "policy", "reasons")

    # the shipped stages' models, for training reports and benchmarks
    @property
    def light(self) -> LightModel:
        return cast(LightStage, self.stage("light")).model

    @property
    def anomaly(self) -> AnomalyModel:
        return cast(AnomalyStage, self.stage("anomaly")).model

    @property
    def heavy(self) -> HeavyModel:
        return cast(HeavyStage, self.stage("heavy")).model

    @property
    def thresholds(self) -> Thresholds:
        return self.policy.thresholds

    @property
    def use_anomaly(self) -> bool:
        return self.policy.use_anomaly

    def without_anomaly(self) -> Cascade:
        """A copy whose policy ignores the anomaly score (the heavy model still receives it as an input)."""
        out = copy.copy(self)
        out.policy = self.policy.without_anomaly()
        out.metrics = dict(self.metrics)
        return out

    def with_thresholds(self, thresholds: Thresholds) -> Cascade:
        out = copy.copy(self)
        out.policy = self.policy.with_thresholds(thresholds)
        return out

    def score(self, X: np.ndarray, batch: TransactionBatch, timings: dict[str, float] | None = None) -> CascadeResult:
        """Decide every row of a micro-batch.

        ``timings``, when given, receives the seconds spent per stage (keys :meth:`timing_stages`, added to).
        """
        clock = _StageClock(timings)
        X = np.asarray(X, dtype=np.float64)
        n = len(batch)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"X: expected shape (rows, {len(self.feature_names)}) in feature order, got {X.shape}")
        if X.shape[0] != n:
            raise ValueError(f"X has {X.shape[0]} rows but the batch has {n} transactions")
        policy = self.policy
        outcome = self.rules.evaluate(X, batch)
        clock.lap("rules")
        scores: dict[str, np.ndarray] = {}
        for stage in self.stages:
            if not stage.routed:
                scores[stage.name] = stage.score(X, scores)
                clock.lap(stage.name)
        routing = policy.first_pass(scores, outcome.decision)
        decision, stage_of = routing.decision.copy(), routing.stage.copy()
        rows = np.flatnonzero(routing.to_heavy)
        routed_scores = {name: values[rows] for name, values in scores.items()}
        clock.lap("policy")
        for stage in self.stages:
            if stage.routed:
                full = np.full(n, np.nan)
                if rows.size:
                    routed_scores[stage.name] = stage.score(X[rows], routed_scores)
                    full[rows] = routed_scores[stage.name]
                scores[stage.name] = full
                clock.lap(stage.name)
        if rows.size:
            decision[rows] = policy.second_pass(routed_scores)
        clock.lap("policy")
        reasons_threshold = policy.reasons(decision, stage_of, scores)
        clock.lap("reasons")
        policy.escalate(decision, stage_of, outcome.escalate)
        risk = policy.risk(scores, decision, stage_of)
        clock.lap("policy")

        reasons: list[tuple[str, ...]] = [(r,) if r else () for r in reasons_threshold]
        for i, fired in enumerate(outcome.reasons):
            if fired:
                reasons[i] = tuple(r for r in (*fired, reasons_threshold[i]) if r)
        flagged = np.flatnonzero((decision == Decision.BLOCK) | (decision == Decision.REVIEW))
        if flagged.size:
            self._add_contributions(X, scores, flagged, reasons)
        clock.lap("reasons")
        return CascadeResult(
            decision=decision.astype(np.int8), stage=stage_of.astype(np.int8), risk=risk, scores=scores,
            reasons=reasons, model_version=self.version,
        )

    def _add_contributions(self, X: np.ndarray, scores: dict[str, np.ndarray], flagged: np.ndarray,
                           reasons: list[tuple[str, ...]]) -> None:
        """Top contributions of each flagged row from the latest stage that scored it and can explain."""
        remaining = flagged
        for stage in reversed(self.stages):
            if not remaining.size:
                break
            rows = remaining[~np.isnan(scores[stage.name][remaining])]
            if not rows.size:
                continue
            explained = stage.contributions(X[rows], {name: values[rows] for name, values in scores.items()})
            if explained is None:
                continue
            values, names = explained
            _append_top(reasons, rows, values, names)
            remaining = np.setdiff1d(remaining, rows, assume_unique=True)


def _append_top(reasons: list, rows: np.ndarray, contribs: np.ndarray, names: list[str]) -> None:
    top = top_columns(contribs, TOP_CONTRIBUTIONS)
    # plain Python ints and floats: cheaper to index and format per cell than numpy scalars
    top_values = np.take_along_axis(contribs, top, axis=1).tolist()
    for i, columns, values in zip(rows.tolist(), top.tolist(), top_values):
        reasons[i] = (*reasons[i], *[f"{names[c]}:{v:+.3f}" for c, v in zip(columns, values) if v > 0])


def top_columns(values: np.ndarray, k: int) -> np.ndarray:
    """Per row, the columns of the ``k`` largest values, largest first, ties to the lower column: the first ``k``
    of ``np.argsort(-values, axis=1, kind="stable")``, by ``k`` rounds of ``argmax`` (a fifth of the sort's time
    on a batch's flagged rows; finite values)."""
    k = min(k, values.shape[1])
    work = np.array(values, dtype=np.float64)
    out = np.empty((values.shape[0], k), dtype=np.intp)
    index = np.arange(values.shape[0])
    for j in range(k):
        out[:, j] = work.argmax(axis=1)
        work[index, out[:, j]] = -np.inf
    return out
