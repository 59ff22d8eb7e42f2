"""The cascade's contract: decisions, stages and the per-batch result (arrays in, arrays out)."""

from __future__ import annotations

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


@dataclass(frozen=True)
class CascadeResult:
    """Scores and decisions for one micro-batch, row-aligned with the input.

    Scores are in [0, 1]; a stage that did not run for a row has ``nan`` there.  ``risk`` is the cascade's one
    calibrated fraud probability per transaction, whichever stage decided.  ``reasons`` holds, per row, a short
    tuple of human-readable strings (rule names, top feature contributions).
    """

    decision: np.ndarray  # int8, Decision values
    stage: np.ndarray  # int8, Stage values
    risk: np.ndarray  # float64 in [0, 1]
    light_score: np.ndarray  # float64, calibrated light-model fraud probability
    anomaly_score: np.ndarray  # float64 in [0, 1]
    heavy_score: np.ndarray  # float64, nan where the heavy model did not run
    reasons: list[tuple[str, ...]]
    model_version: str

    def __len__(self) -> int:
        return int(self.decision.shape[0])
