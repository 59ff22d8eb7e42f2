"""The heavy stage: a larger boosted-tree model that also sees the light and anomaly scores.

It runs only on the rows the light stage could not settle, so it may cost more per transaction: by default
300 trees of depth 6 (3x the light model's trees, up to 4x the leaves each) over the features plus two stacked
inputs, ``LIGHT_SCORE`` and ``ANOMALY_SCORE``.  During training the stacked light score must come from a light
model that did not see the row (out-of-fold), or the heavy model learns to trust an over-fitted input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fraudstream.detectors.models.light import BoostedTreeModel

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
