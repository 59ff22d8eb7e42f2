"""Fixtures shared by unit and integration tests: one tiny trained model bundle for the whole session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest


@dataclass(frozen=True)
class TinyBundle:
    """A small cascade trained once per session.

    root : model root (``LATEST`` names the version).
    frame : the simulated transactions it was trained on (handbook columns).
    version : the bundle's model version.
    """

    root: Path
    frame: pd.DataFrame
    version: str

    def rows(self, n: int) -> pd.DataFrame:
        """The ``n`` earliest transactions, in event-time order."""
        return self.frame.sort_values(["TX_DATETIME", "TRANSACTION_ID"]).head(n).reset_index(drop=True)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    """100 customers, 200 terminals, 30 days; 20-tree models and an IForest detector (a few seconds)."""
    from fraudstream.detectors.bundle import load_bundle, save_bundle
    from fraudstream.training.simulator import SimulationConfig, simulate
    from fraudstream.training.train import TrainSettings, train_from_frame

    frame = simulate(SimulationConfig(n_customers=100, n_terminals=200, nb_days=30, seed=11))
    result = train_from_frame(frame, TrainSettings(light_trees=20, heavy_trees=20, heavy_depth=3,
                                                   anomaly_methods=("IForest",), anomaly_max_rows=2000,
                                                   stacking_folds=2))
    root = tmp_path_factory.mktemp("tiny-bundle")
    save_bundle(result.cascade, root, result.manifest_extras)
    return TinyBundle(root, frame, load_bundle(root).version)
