"""Choosing the anomaly detector on what it adds to the light model, not on the frauds the light model finds.

A detector's average precision on *all* known frauds rewards the one that best repeats what the supervised
model already knows.  What the cascade needs from it is the frauds the light model misses.  On validation:

* the light model "flags" the rows whose light score is at or above its ``1 - legit_flag_rate`` quantile among
  legitimate rows (default ``legit_flag_rate`` 1%: it flags 1% of legitimate traffic);
* the **missed frauds** are the frauds it does not flag; the population the detector is judged on is every row
  the light model does not flag (those frauds and the legitimate rows left);
* ``added_ap``: the detector's average precision on that population (how well it ranks the missed frauds
  above the legitimate rows the light model also let through);
* ``added_recall``: the share of the missed frauds the detector flags when it, too, flags ``legit_flag_rate`` of
  the legitimate rows of that population.

Detectors are ranked by ``added_ap``, then ``added_recall``; when the light model misses no fraud (or the
population is single-class) both are ``nan`` and the plain average precision decides.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import average_precision_score

#: Share of legitimate validation rows the light model, then the detector, may flag.
DEFAULT_LEGIT_FLAG_RATE = 0.01


def missed_by_light(light: np.ndarray, y: np.ndarray, legit_flag_rate: float = DEFAULT_LEGIT_FLAG_RATE,
                    ) -> tuple[np.ndarray, float]:
    """Rows the light model does not flag at ``legit_flag_rate`` (bool per row) and its threshold there."""
    light = np.asarray(light, dtype=np.float64)
    legit = np.asarray(y) == 0
    if not legit.any():
        return np.ones(light.size, dtype=bool), float("inf")
    threshold = float(np.quantile(light[legit], 1.0 - legit_flag_rate, method="higher"))
    return light < threshold, threshold


def added_value(scores: np.ndarray, y: np.ndarray, unflagged: np.ndarray,
                legit_flag_rate: float = DEFAULT_LEGIT_FLAG_RATE) -> dict[str, float]:
    """``added_ap``, ``added_recall`` and ``missed_frauds`` of one detector's validation scores (see above)."""
    scores = np.asarray(scores, dtype=np.float64)[unflagged]
    yy = np.asarray(y)[unflagged].astype(bool)
    missed = int(yy.sum())
    if missed == 0 or missed == yy.size:
        return {"added_ap": float("nan"), "added_recall": float("nan"), "missed_frauds": float(missed)}
    cut = float(np.quantile(scores[~yy], 1.0 - legit_flag_rate, method="higher"))
    return {"added_ap": float(average_precision_score(yy, scores)),
            "added_recall": float((scores[yy] > cut).mean()),
            "missed_frauds": float(missed)}


def added_value_criterion(light: np.ndarray, y: np.ndarray, legit_flag_rate: float = DEFAULT_LEGIT_FLAG_RATE,
                          ) -> Callable[[np.ndarray], dict[str, float]]:
    """A function of a detector's validation scores giving its :func:`added_value` against this light model."""
    unflagged, _ = missed_by_light(light, y, legit_flag_rate)

    def criterion(scores: np.ndarray) -> dict[str, float]:
        return added_value(scores, y, unflagged, legit_flag_rate)

    return criterion


def ranking_key(figures: dict[str, float]) -> tuple[float, float, float]:
    """Sort key (larger is better): added AP, added recall, then plain AP; ``nan`` counts as -1."""
    def value(name: str) -> float:
        x = figures.get(name, float("nan"))
        return -1.0 if x is None or not np.isfinite(x) else float(x)

    return value("added_ap"), value("added_recall"), value("average_precision")
