"""The cascade's decision policy: pure, vectorized routing of score arrays to decisions.

Order, row by row:

1. A final rule (block or allow list, maximum amount) decides: stage RULES.
2. Light stage: BLOCK when ``light >= t_block_light``; ALLOW when ``light <= t_allow_light`` and
   ``anomaly <= t_anomaly_allow``.  Stage LIGHT.
3. The rest goes to the heavy model: BLOCK when ``heavy >= t_block_heavy``; REVIEW when ``heavy >= t_review`` or
   ``anomaly >= t_anomaly_review``; else ALLOW.  Stage HEAVY.
4. A row the burst rule escalated and the models would ALLOW becomes REVIEW (stage RULES).

With ``use_anomaly=False`` the anomaly conditions are dropped: the light ALLOW needs only ``light <=
t_allow_light`` and REVIEW needs ``heavy >= t_review``.  A threshold above 1 never fires.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from fraudstream.detectors.cascade.types import Decision, Stage

#: Value of a threshold that must never fire (scores live in [0, 1]).
NEVER = 2.0
#: Marker for rows the light stage leaves to the heavy model.
PENDING = -1


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds, all on [0, 1] scores (a value above 1 disables the rule it drives)."""

    t_block_light: float = NEVER
    t_allow_light: float = -1.0
    t_anomaly_allow: float = 1.0
    t_block_heavy: float = NEVER
    t_review: float = NEVER
    t_anomaly_review: float = NEVER

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Thresholds:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"thresholds: unknown key(s) {sorted(unknown)}")
        return cls(**{k: float(v) for k, v in data.items()})


@dataclass(frozen=True)
class LightRouting:
    """Outcome of steps 1-2: ``decision`` is :data:`PENDING` where the heavy model must run (``to_heavy``)."""

    decision: np.ndarray  # int8
    stage: np.ndarray  # int8
    to_heavy: np.ndarray  # bool


#: Names of the stages whose scores the policy reads (see :mod:`fraudstream.detectors.cascade.registry`).
LIGHT, ANOMALY, HEAVY = "light", "anomaly", "heavy"


@dataclass(frozen=True)
class CascadePolicy:
    """The one routing policy of the cascade: thresholds plus whether the anomaly score takes part.

    Scoring (:meth:`fraudstream.detectors.cascade.cascade.Cascade.score`), calibration
    (:mod:`fraudstream.detectors.cascade.calibration`) and the reports all route through this object.  Score
    mappings are keyed by stage name (:data:`LIGHT`, :data:`ANOMALY`, :data:`HEAVY`); other stages' scores are
    ignored by the policy.
    """

    thresholds: Thresholds = Thresholds()
    use_anomaly: bool = True

    def with_thresholds(self, thresholds: Thresholds) -> CascadePolicy:
        return replace(self, thresholds=thresholds)

    def without_anomaly(self) -> CascadePolicy:
        return replace(self, use_anomaly=False)

    def first_pass(self, scores: Mapping[str, np.ndarray], rule_decision: np.ndarray | None = None) -> LightRouting:
        """Steps 1-2.  ``rule_decision`` holds a Decision or -1 (no final rule) per row."""
        light, anomaly, th = scores[LIGHT], scores[ANOMALY], self.thresholds
        n = light.shape[0]
        decision = np.full(n, PENDING, dtype=np.int8)
        stage = np.full(n, Stage.HEAVY, dtype=np.int8)
        by_rule = np.zeros(n, dtype=bool) if rule_decision is None else rule_decision >= 0
        if rule_decision is not None and by_rule.any():
            decision[by_rule] = rule_decision[by_rule]
            stage[by_rule] = Stage.RULES
        block = ~by_rule & (light >= th.t_block_light)
        allow = light <= th.t_allow_light
        if self.use_anomaly:
            allow &= anomaly <= th.t_anomaly_allow
        allow &= ~by_rule & ~block
        decision[block] = Decision.BLOCK
        decision[allow] = Decision.ALLOW
        stage[block | allow] = Stage.LIGHT
        return LightRouting(decision=decision, stage=stage, to_heavy=decision == PENDING)

    def second_pass(self, scores: Mapping[str, np.ndarray]) -> np.ndarray:
        """Step 3 for rows sent to the heavy model (``scores`` holds only those rows): Decision values (int8)."""
        heavy, anomaly, th = scores[HEAVY], scores[ANOMALY], self.thresholds
        review = heavy >= th.t_review
        if self.use_anomaly:
            review |= anomaly >= th.t_anomaly_review
        decision = np.where(review, np.int8(Decision.REVIEW), np.int8(Decision.ALLOW)).astype(np.int8)
        decision[heavy >= th.t_block_heavy] = Decision.BLOCK
        return decision

    @staticmethod
    def escalate(decision: np.ndarray, stage: np.ndarray, escalate: np.ndarray) -> None:
        """Step 4, in place: a row the burst rule escalated and the models would ALLOW becomes REVIEW (RULES)."""
        bump = escalate & (decision == Decision.ALLOW) & (stage != Stage.RULES)
        decision[bump] = Decision.REVIEW
        stage[bump] = Stage.RULES

    def decide(
        self,
        scores: Mapping[str, np.ndarray],
        rule_decision: np.ndarray | None = None,
        escalate: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The whole policy on full score arrays (the heavy score may be nan where not needed): (decision, stage)."""
        routing = self.first_pass(scores, rule_decision)
        decision, stage = routing.decision.copy(), routing.stage.copy()
        rows = routing.to_heavy
        decision[rows] = self.second_pass({name: values[rows] for name, values in scores.items()})
        if escalate is not None:
            self.escalate(decision, stage, escalate)
        return decision, stage

    @staticmethod
    def risk(scores: Mapping[str, np.ndarray], decision: np.ndarray, stage: np.ndarray) -> np.ndarray:
        """One calibrated fraud probability per row: the heavy score where it ran, else the light score; 1.0 for
        a rule's BLOCK."""
        heavy, light = scores[HEAVY], scores[LIGHT]
        risk = np.where(np.isnan(heavy), light, heavy)
        risk[(stage == Stage.RULES) & (decision == Decision.BLOCK)] = 1.0
        return risk

    def reasons(self, decision: np.ndarray, stage: np.ndarray, scores: Mapping[str, np.ndarray]) -> list[str]:
        """Per row, the threshold that settled a model decision (empty string for rule decisions).

        BLOCK and REVIEW rows name the score and the threshold it crossed (``light_block:0.973>=0.900``).  ALLOW
        rows, nearly every row, name the thresholds their scores stayed under, one shared string per kind
        (``light_allow:<=0.050,anomaly:<=0.970``); their scores are the decision's ``<stage>_score`` fields.
        Vectorized by kind of reason: no per-row branching in Python.
        """
        t = self.thresholds
        light, anomaly, heavy = scores[LIGHT], scores[ANOMALY], scores[HEAVY]
        by_light = stage == Stage.LIGHT
        by_heavy = stage == Stage.HEAVY
        block = decision == Decision.BLOCK
        review = decision == Decision.REVIEW
        heavy_review = heavy >= t.t_review  # False where the heavy model did not run (nan)
        kinds = np.full(decision.shape[0], "", dtype=object)
        kinds[by_light & ~block] = self.allow_reasons[0]
        kinds[by_heavy & ~block & ~review] = self.allow_reasons[1]
        out: list[str] = kinds.tolist()
        _fill(out, by_light & block, "light_block:{0:.3f}>=" + f"{t.t_block_light:.3f}", light)
        _fill(out, by_heavy & block, "heavy_block:{0:.3f}>=" + f"{t.t_block_heavy:.3f}", heavy)
        _fill(out, by_heavy & review & heavy_review, "heavy_review:{0:.3f}>=" + f"{t.t_review:.3f}", heavy)
        _fill(out, by_heavy & review & ~heavy_review, "anomaly_review:{0:.3f}>=" + f"{t.t_anomaly_review:.3f}",
              anomaly)
        return out

    @property
    def allow_reasons(self) -> tuple[str, str]:
        """The reasons of ALLOW rows settled by the light stage and by the heavy stage."""
        t = self.thresholds
        light = f"light_allow:<={t.t_allow_light:.3f}" + (f",anomaly:<={t.t_anomaly_allow:.3f}" if self.use_anomaly
                                                          else "")
        return light, f"heavy_allow:<{min(t.t_review, t.t_block_heavy):.3f}"


def _scores(light: np.ndarray, anomaly: np.ndarray, heavy: np.ndarray | None = None) -> dict[str, np.ndarray]:
    out = {LIGHT: light, ANOMALY: anomaly}
    if heavy is not None:
        out[HEAVY] = heavy
    return out


def route_light(
    light: np.ndarray,
    anomaly: np.ndarray,
    thresholds: Thresholds,
    rule_decision: np.ndarray | None = None,
    use_anomaly: bool = True,
) -> LightRouting:
    """:meth:`CascadePolicy.first_pass` on score arrays."""
    return CascadePolicy(thresholds, use_anomaly).first_pass(_scores(light, anomaly), rule_decision)


def route_heavy(heavy: np.ndarray, anomaly: np.ndarray, thresholds: Thresholds, use_anomaly: bool = True) -> np.ndarray:
    """:meth:`CascadePolicy.second_pass` on score arrays."""
    return CascadePolicy(thresholds, use_anomaly).second_pass(_scores(np.empty(0), anomaly, heavy))


def apply_policy(
    light: np.ndarray,
    anomaly: np.ndarray,
    heavy: np.ndarray,
    thresholds: Thresholds,
    rule_decision: np.ndarray | None = None,
    escalate: np.ndarray | None = None,
    use_anomaly: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`CascadePolicy.decide` on score arrays: (decision, stage) int8."""
    return CascadePolicy(thresholds, use_anomaly).decide(_scores(light, anomaly, heavy), rule_decision, escalate)


def threshold_reasons(
    decision: np.ndarray,
    stage: np.ndarray,
    light: np.ndarray,
    anomaly: np.ndarray,
    heavy: np.ndarray,
    thresholds: Thresholds,
    use_anomaly: bool = True,
) -> list[str]:
    """:meth:`CascadePolicy.reasons` on score arrays."""
    return CascadePolicy(thresholds, use_anomaly).reasons(decision, stage, _scores(light, anomaly, heavy))


def _fill(out: list[str], rows: np.ndarray, template: str, *values: np.ndarray) -> None:
    """``out[i] = template.format(values[0][i], ...)`` for every row ``i`` where ``rows`` is True.

    The placeholders of ``template`` are ``{k:.3f}``; the strings are built with numpy string operations
    (:func:`fixed3`), not one ``format`` call per row.
    """
    index = np.flatnonzero(rows)
    if not index.size:
        return
    if index.size <= FORMAT_PER_ROW_MAX:  # numpy's string operations cost more than they save on a few rows
        columns = [v[index].tolist() for v in values]
        for j, i in enumerate(index.tolist()):
            out[i] = template.format(*(c[j] for c in columns))
        return
    pieces = _PLACEHOLDER.split(template)  # text, placeholder number, text, ...
    text = np.full(index.size, pieces[0])
    for k in range(1, len(pieces), 2):
        text = np.strings.add(np.strings.add(text, fixed3(values[int(pieces[k])][index])), pieces[k + 1])
    for i, reason in zip(index.tolist(), text.tolist()):
        out[i] = reason


_PLACEHOLDER = re.compile(r"\{(\d+):\.3f\}")
#: Up to this many rows of one kind of reason, the strings are formatted one row at a time (the definition itself).
FORMAT_PER_ROW_MAX = 32
#: Distance (in thousandths) from a rounding tie below which a value is formatted by Python instead.
_TIE_MARGIN = 1e-6


def fixed3(values: np.ndarray) -> np.ndarray:
    """``f"{v:.3f}"`` of every value, as a numpy string array, vectorized for values in [0, 1].

    A value is rounded to thousandths with ``rint(v * 1000)``, which is Python's correctly rounded result except
    within a hair of a tie; those values, and any outside [0, 1] or not finite, go through ``format``.
    """
    values = np.asarray(values, dtype=np.float64)
    scaled = values * 1000.0
    thousandths = np.rint(scaled)
    exact = np.isfinite(values) & (values >= 0.0) & (values <= 1.0) & \
        (np.abs(np.abs(scaled - np.floor(scaled)) - 0.5) > _TIE_MARGIN)
    k = np.where(exact, thousandths, 0).astype(np.int64)
    codes = np.empty((values.shape[0], 5), dtype=np.uint32)
    codes[:, 0] = 48 + k // 1000
    codes[:, 1] = 46  # "."
    codes[:, 2] = 48 + (k // 100) % 10
    codes[:, 3] = 48 + (k // 10) % 10
    codes[:, 4] = 48 + k % 10
    out = codes.view("<U5").reshape(values.shape[0]).astype(object if not exact.all() else "<U5")
    for i in np.flatnonzero(~exact).tolist():
        out[i] = f"{values[i]:.3f}"
    return out.astype(str) if out.dtype == object else out
