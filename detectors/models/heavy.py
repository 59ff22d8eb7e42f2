"""The heavy stage: a larger boosted-tree model that also sees the light and anomaly scores.

It runs only on the rows the light stage could not settle, so it may cost more per transaction and see more:
by default 400 trees of depth 4 over every feature, the card's recent sequence included (``CUSTOMER_PREV*``,
which the light model does not read), plus two stacked inputs, ``LIGHT_SCORE`` and ``ANOMALY_SCORE``.  During
training the stacked light score must come from a light model that did not see the row (out-of-fold), or the
heavy model learns to trust an over-fitted input.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fraudstream.detectors.models.light import BoostedTreeModel, tree_contributions

#: Names of the stacked inputs appended after the features.
STACKED_INPUTS = ["LIGHT_SCORE", "ANOMALY_SCORE"]


def heavy_inputs(X: np.ndarray, light_score: np.ndarray, anomaly_score: np.ndarray) -> np.ndarray:
    """The heavy model's input matrix: features, then light score, then anomaly score (rows x (features + 2))."""
    return np.column_stack([np.asarray(X, dtype=np.float64), light_score, anomaly_score])


def heavy_feature_names(feature_names: list[str]) -> list[str]:
    return list(feature_names) + STACKED_INPUTS


class HeavyModel(BoostedTreeModel):
    """The cascade's second model (defaults: 400 trees of depth 4, learning rate 0.05, 80% row and column
    subsampling per tree, at least 5 hessian weight per leaf): slower, smoother and stacked on the light and
    anomaly scores."""

    def __init__(
        self,
        n_estimators: int = 400,
        max_depth: int = 4,
        learning_rate: float = 0.05,
        min_child_weight: float = 5.0,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        **params: Any,
    ) -> None:
        super().__init__(
            n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate,
            min_child_weight=min_child_weight, subsample=subsample, colsample_bytree=colsample_bytree, **params,
        )


class HeavyStage:
    """The heavy model as a cascade stage: scores only the rows routed to it (``heavy_score``), stacked on the
    light and anomaly scores of those rows, and explains with its trees."""

    name: ClassVar[str] = "heavy"
    routed: ClassVar[bool] = True
    files: ClassVar[tuple[str, ...]] = ("heavy.json", "heavy_meta.json")

    def __init__(self, model: HeavyModel) -> None:
        self.model = model

    def inputs(self, X: np.ndarray, upstream: Mapping[str, np.ndarray]) -> np.ndarray:
        return heavy_inputs(X, upstream["light"], upstream["anomaly"])

    def score(self, X: np.ndarray, upstream: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.model.score(self.inputs(X, upstream))

    def contributions(self, X: np.ndarray, upstream: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
        return tree_contributions(self.model, self.inputs(X, upstream))

    def save(self, directory: Path) -> list[Path]:
        return self.model.save(directory, self.name)

    @classmethod
    def load(cls, directory: Path) -> HeavyStage:
        return cls(HeavyModel.load(directory, cls.name))
