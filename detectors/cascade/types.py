"""The cascade's contract: decisions, stages and the per-batch result (arrays in, arrays out)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Decision(IntEnum):
    """What happens to a transaction."""

    ALLOW = 0
    BLOCK = 1
    REVIEW = 2


class Stage(IntEnum):
    """Which stage of the cascade settled the decision."""

    RULES = 0
    LIGHT = 1  # light XGBoost model together with the anomaly detector
    HEAVY = 2  # heavy model; REVIEW decisions come from here (it could not settle them)


SCORE_SUFFIX = "_score"


@dataclass(frozen=True, init=False)
class CascadeResult:
    """Scores and decisions for one micro-batch, row-aligned with the input.

    ``scores`` holds one float64 array per scoring stage, keyed by stage name in cascade order (``"light"``,
    ``"anomaly"``, ``"heavy"`` for the shipped stages); scores are in [0, 1] and a stage that did not run for a
    row has ``nan`` there.  ``result.<name>_score`` reads ``scores[name]``, and the constructor accepts the
    scores either as ``scores=`` or as ``<name>_score=`` keywords (in that order).  ``risk`` is the cascade's
    one calibrated fraud probability per transaction, whichever stage decided.  ``reasons`` holds, per row, a
    short tuple of human-readable strings (rule names, threshold, top feature contributions).
    """

    decision: np.ndarray  # int8, Decision values
    stage: np.ndarray  # int8, Stage values
    risk: np.ndarray  # float64 in [0, 1]
    scores: dict[str, np.ndarray]
    reasons: list[tuple[str, ...]]
    model_version: str

    def __init__(self, decision: np.ndarray, stage: np.ndarray, risk: np.ndarray,
                 reasons: list[tuple[str, ...]], model_version: str,
                 scores: Mapping[str, np.ndarray] | None = None, **named_scores: np.ndarray) -> None:
        merged = dict(scores or {})
        for key, values in named_scores.items():
            if not key.endswith(SCORE_SUFFIX):
                raise TypeError(f"CascadeResult: unexpected argument {key!r}")
            merged[key.removesuffix(SCORE_SUFFIX)] = values
        object.__setattr__(self, "decision", decision)
        object.__setattr__(self, "stage", stage)
        object.__setattr__(self, "risk", risk)
        object.__setattr__(self, "scores", merged)
        object.__setattr__(self, "reasons", reasons)
        object.__setattr__(self, "model_version", model_version)

    def __getattr__(self, name: str) -> np.ndarray:
        if name.endswith(SCORE_SUFFIX) and name != "scores":
            scores = self.__dict__.get("scores") or {}
            stage = name.removesuffix(SCORE_SUFFIX)
            if stage in scores:
                return scores[stage]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __len__(self) -> int:
        return int(self.decision.shape[0])
