"""The scoring-stage contract: what a detector must provide to take part in the cascade.

A stage turns a micro-batch's feature rows into one score per row (arrays in, arrays out).  Stages run in the
order of :data:`fraudstream.detectors.cascade.registry.STAGE_TYPES`; each sees the scores of the stages before
it (``upstream``, row-aligned with ``X``), so a stacked model can use them as inputs.

* A **screening** stage (``routed = False``) scores every row of the batch (light model, anomaly detector).
* A **routed** stage (``routed = True``) scores only the rows the policy's first pass leaves undecided (the heavy
  model); its score is ``nan`` elsewhere.

Everything else follows from the stage's ``name``: the key of its scores in
:attr:`~fraudstream.detectors.cascade.types.CascadeResult.scores`, the decision JSON field ``<name>_score``, the
``kind`` label of the score metric, and the files it writes into a model bundle (``files``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

#: Scores of earlier stages, by stage name, row-aligned with the rows being scored (float64 arrays).
Scores = Mapping[str, np.ndarray]


@runtime_checkable
class ScoringStage(Protocol):
    """One fitted detector of the cascade.

    Attributes
    ----------
    name : short lower-case identifier (``"light"``); unique among registered stages.
    routed : False for a stage that scores every row, True for one that scores only the rows routed to it.
    files : names of the files :meth:`save` writes into a bundle directory (checked by the manifest).
    """

    name: ClassVar[str]
    routed: ClassVar[bool]
    files: ClassVar[tuple[str, ...]]

    def score(self, X: np.ndarray, upstream: Scores) -> np.ndarray:
        """Scores in [0, 1] (float64, one per row of ``X``); ``upstream`` holds the earlier stages' scores."""
        ...

    def contributions(self, X: np.ndarray, upstream: Scores) -> tuple[np.ndarray, list[str]] | None:
        """Per-row input contributions to the score (rows x inputs, log-odds units) and the inputs' names.

        None when the stage cannot explain its scores; the cascade then explains a flagged row with the
        latest stage before it that can.
        """
        ...

    def save(self, directory: Path) -> list[Path]:
        """Write the fitted stage into ``directory``; returns the paths written (those named by ``files``)."""
        ...

    @classmethod
    def load(cls, directory: Path) -> ScoringStage:
        """The stage as :meth:`save` wrote it into ``directory``."""
        ...
