"""The cascade: rules, light model + anomaly detector, heavy model, and the thresholds that route between them.

``risk`` (one calibrated fraud probability per row, whichever stage decided):

* RULES, block list / maximum amount: 1.0 (the rule is certain by definition);
* RULES, allow list: the light model's calibrated probability (kept for monitoring; the decision is ALLOW);
* LIGHT: the light model's calibrated probability;
* HEAVY: the heavy model's calibrated probability;
* RULES, burst escalation to REVIEW: the probability of the model that would have decided.

Reasons per row: the rules that fired, the threshold that settled the decision, and for BLOCK and REVIEW rows the
top 3 positive feature contributions (XGBoost ``pred_contribs``) of the model whose score decided (the heavy model
when it ran, else the light model), formatted ``FEATURE:+0.123`` (log-odds units).  Contributions are computed only
for BLOCK and REVIEW rows, with XGBoost's approximate (per-path, Saabas) contributions rather than exact TreeSHAP
(:data:`APPROXIMATE_CONTRIBUTIONS`): exact TreeSHAP cost most of ``score`` at batch 1,000 (about 0.25 ms per
flagged row on a 100-tree model).  ALLOW rows get the threshold reason only.

Scoring is row-independent and deterministic: fixed thresholds, and every model scores a row the same way
whatever batch it is in.
"""

from __future__ import annotations

import copy
import time

import numpy as np

from fraudstream.detectors.cascade.policy import (
    Thresholds,
    route_heavy,
    route_light,
    threshold_reasons,
)
from fraudstream.detectors.cascade.types import CascadeResult, Decision, Stage
from fraudstream.detectors.features.definition import FeatureConfig
from fraudstream.detectors.models.anomaly import AnomalyModel
from fraudstream.detectors.models.heavy import HeavyModel, heavy_feature_names, heavy_inputs
from fraudstream.detectors.models.light import LightModel
from fraudstream.detectors.rules import RuleSet
from fraudstream.detectors.schema import TransactionBatch

#: Feature contributions listed per BLOCK / REVIEW row.
TOP_CONTRIBUTIONS = 3
#: Reasons use approximate feature contributions (see the module docstring).
APPROXIMATE_CONTRIBUTIONS = True
#: Keys of the per-stage timings :meth:`Cascade.score` can report (seconds).
TIMING_STAGES = ("rules", "light", "anomaly", "heavy", "policy", "reasons")


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
    rules, light, anomaly, heavy : the stages (fitted).
    thresholds : routing thresholds (see :mod:`fraudstream.detectors.cascade.policy`).
    version : model version name, copied into every result.
    feature_names : names of ``X``'s columns, in order.
    feature_config : the feature configuration the models were trained with.
    use_anomaly : whether the policy looks at the anomaly score.
    metrics : training and validation figures (free-form, saved in the bundle manifest).
    """

    def __init__(
        self,
        rules: RuleSet,
        light: LightModel,
        anomaly: AnomalyModel,
        heavy: HeavyModel,
        thresholds: Thresholds,
        version: str,
        feature_names: list[str],
        feature_config: FeatureConfig,
        use_anomaly: bool = True,
        metrics: dict | None = None,
    ) -> None:
        self.rules = rules
        self.light = light
        self.anomaly = anomaly
        self.heavy = heavy
        self.thresholds = thresholds
        self.version = version
        self.feature_names = list(feature_names)
        self.feature_config = feature_config
        self.use_anomaly = use_anomaly
        self.metrics = dict(metrics or {})

    def without_anomaly(self) -> Cascade:
        """A copy whose policy ignores the anomaly score (the heavy model still receives it as an input)."""
        out = copy.copy(self)
        out.use_anomaly = False
        out.metrics = dict(self.metrics)
        return out

    def with_thresholds(self, thresholds: Thresholds) -> Cascade:
        out = copy.copy(self)
        out.thresholds = thresholds
        return out

    def score(self, X: np.ndarray, batch: TransactionBatch, timings: dict[str, float] | None = None) -> CascadeResult:
        """Decide every row of a micro-batch.

        ``timings``, when given, receives the seconds spent per stage (keys :data:`TIMING_STAGES`, added to).
        """
        clock = _StageClock(timings)
        X = np.asarray(X, dtype=np.float64)
        n = len(batch)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"X: expected shape (rows, {len(self.feature_names)}) in feature order, got {X.shape}")
        if X.shape[0] != n:
            raise ValueError(f"X has {X.shape[0]} rows but the batch has {n} transactions")
        th = self.thresholds
        outcome = self.rules.evaluate(X, batch)
        clock.lap("rules")
        light = self.light.score(X)
        clock.lap("light")
        anomaly = self.anomaly.score(X)
        clock.lap("anomaly")
        routing = route_light(light, anomaly, th, outcome.decision, self.use_anomaly)
        decision, stage = routing.decision.copy(), routing.stage.copy()
        heavy = np.full(n, np.nan)
        rows = np.flatnonzero(routing.to_heavy)
        heavy_X = None
        if rows.size:
            heavy_X = heavy_inputs(X[rows], light[rows], anomaly[rows])
            clock.lap("policy")
            heavy[rows] = self.heavy.score(heavy_X)
            clock.lap("heavy")
            decision[rows] = route_heavy(heavy[rows], anomaly[rows], th, self.use_anomaly)
        clock.lap("policy")
        reasons_threshold = threshold_reasons(decision, stage, light, anomaly, heavy, th, self.use_anomaly)
        clock.lap("reasons")
        bump = outcome.escalate & (decision == Decision.ALLOW) & (stage != Stage.RULES)
        decision[bump] = Decision.REVIEW
        stage[bump] = Stage.RULES

        risk = np.where(np.isnan(heavy), light, heavy)
        risk[(stage == Stage.RULES) & (decision == Decision.BLOCK)] = 1.0
        clock.lap("policy")

        reasons: list[tuple[str, ...]] = [(r,) if r else () for r in reasons_threshold]
        for i, fired in enumerate(outcome.reasons):
            if fired:
                reasons[i] = tuple(r for r in (*fired, reasons_threshold[i]) if r)
        flagged = np.flatnonzero((decision == Decision.BLOCK) | (decision == Decision.REVIEW))
        if flagged.size:
            self._add_contributions(X, light, anomaly, heavy, heavy_X, rows, flagged, reasons)
        clock.lap("reasons")
        return CascadeResult(
            decision=decision.astype(np.int8), stage=stage.astype(np.int8), risk=risk, light_score=light,
            anomaly_score=anomaly, heavy_score=heavy, reasons=reasons, model_version=self.version,
        )

    def _add_contributions(self, X, light, anomaly, heavy, heavy_X, heavy_rows, flagged, reasons) -> None:
        by_heavy = flagged[~np.isnan(heavy[flagged])]
        by_light = flagged[np.isnan(heavy[flagged])]
        if by_light.size:
            contribs = self.light.contributions(X[by_light], approximate=APPROXIMATE_CONTRIBUTIONS)
            _append_top(reasons, by_light, contribs, self.feature_names)
        if by_heavy.size:
            position = np.searchsorted(heavy_rows, by_heavy)  # heavy_rows is sorted (flatnonzero)
            contribs = self.heavy.contributions(heavy_X[position], approximate=APPROXIMATE_CONTRIBUTIONS)
            _append_top(reasons, by_heavy, contribs, heavy_feature_names(self.feature_names))


def _append_top(reasons: list, rows: np.ndarray, contribs: np.ndarray, names: list[str]) -> None:
    k = min(TOP_CONTRIBUTIONS, contribs.shape[1])
    top = np.argsort(-contribs, axis=1, kind="stable")[:, :k]
    for j, i in enumerate(rows):
        extra = tuple(f"{names[c]}:{contribs[j, c]:+.3f}" for c in top[j] if contribs[j, c] > 0)
        reasons[i] = reasons[i] + extra
