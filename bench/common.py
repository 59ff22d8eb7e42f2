"""What every benchmark section shares: repeated figures, tables, the model and data they run on, process stats.

A :class:`Figure` is the list of one quantity's repetitions; tables print its median with min and max.  The suite
never asserts a floor: it prints each floor next to the figure and says whether it is met.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MS_PER_S = 1000.0
US_PER_S = 1_000_000.0
#: Steps of the machine yardstick's fixed workload (about 30 ms of pure Python on this project's machine).
YARDSTICK_STEPS = 200_000
#: Where trained bench models are kept between runs (relative to the working directory).
MODEL_CACHE_DIR = Path(".fraudstream") / "bench-models"


@dataclass
class Figure:
    """Repetitions of one measured quantity (``unit`` e.g. ``tx/s``, ``ms``, ``us/tx``)."""

    unit: str
    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> Figure:
        self.values.append(float(value))
        return self

    @property
    def median(self) -> float:
        finite = [v for v in self.values if math.isfinite(v)]
        return statistics.median(finite) if finite else float("nan")

    def cell(self, digits: int = 1) -> str:
        """``median [min, max]`` (just the value for one repetition)."""
        if not self.values:
            return "n/a"
        fmt = f"{{:,.{digits}f}}"
        if len(self.values) == 1:
            return fmt.format(self.values[0])
        return f"{fmt.format(self.median)} [{fmt.format(min(self.values))}, {fmt.format(max(self.values))}]"

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "median": self.median, "values": self.values}


def yardstick_ms(repeats: int = 3, steps: int = YARDSTICK_STEPS) -> float:
    """Wall time (ms) of a fixed pure-Python workload (dictionary updates and integer arithmetic), best of
    ``repeats``: how fast this machine runs Python at the moment.

    The suite takes it at its start and at its end.  Figures of two runs compare only when their yardsticks agree:
    a shared machine can run the same code twice as fast in one hour as in another, and most of the worker's time
    is its own Python.
    """
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        counts: dict[int, int] = {}
        total = 0
        for i in range(steps):
            slot = i & 1023
            counts[slot] = counts.get(slot, 0) + i
            total += i * 7 % 13
        best = min(best, time.perf_counter() - started)
    return best * MS_PER_S


def table(title: str, head: Sequence[str], rows: Sequence[Sequence[str]], note: str = "") -> str:
    """A Markdown table with a title line (and an optional note under it)."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(head)]
    lines = [f"\n### {title}\n", "| " + " | ".join(str(h).ljust(w) for h, w in zip(head, widths)) + " |",
             "| " + " | ".join("-" * w for w in widths) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
    if note:
        lines.append(f"\n{note}")
    return "\n".join(lines)


def floor_cell(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "MISSED")


def percentiles_ms(latencies_ms: np.ndarray, qs: Sequence[float] = (50, 95, 99)) -> list[float]:
    """Percentiles ``qs`` of the values that are not NaN (NaN: not measured); NaN for each when there are none."""
    latencies_ms = latencies_ms[~np.isnan(latencies_ms)]
    if latencies_ms.size == 0:
        return [float("nan")] * len(qs)
    return [float(v) for v in np.percentile(latencies_ms, qs)]


# ---- model and data ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRecipe:
    """How the bench trains its model when none is given: simulated data and the model's size."""

    n_customers: int = 500
    n_terminals: int = 1000
    nb_days: int = 30
    light_trees: int = 300
    heavy_trees: int = 400
    anomaly_method: str = "IForest"
    imbalance: str = "none"  # one treatment and one calibration: the bench needs the model's shape, not its best
    calibration: str = "isotonic"
    #: Analyst capacity (cards a day) of its calibration: 100 a day for the default data's 5,000 customers, scaled
    #: to this population, so that the bench model flags a share of traffic like a production one (about 1-3%).
    review_capacity: float = 10.0
    seed: int = 3

    def key(self) -> str:
        """Cache key: the recipe and the feature set (a cached model of another feature set does not load)."""
        from fraudstream.detectors.features.definition import FEATURE_SET_VERSION

        recipe = {**self.__dict__, "feature_set_version": FEATURE_SET_VERSION}
        return hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]


def prepare_model(model_dir: str | None, recipe: ModelRecipe, log: Any = print) -> Path:
    """The model root to benchmark: ``model_dir`` when given, else one trained from ``recipe`` (cached)."""
    if model_dir:
        return Path(model_dir)
    root = MODEL_CACHE_DIR / recipe.key()
    if (root / "LATEST").exists():
        return root
    from fraudstream.detectors.bundle import save_bundle
    from fraudstream.training.simulator import SimulationConfig, simulate
    from fraudstream.training.train import TrainSettings, train_from_frame

    log(f"training the bench model ({recipe.light_trees} + {recipe.heavy_trees} trees, {recipe.anomaly_method}) ...")
    frame = simulate(SimulationConfig(n_customers=recipe.n_customers, n_terminals=recipe.n_terminals,
                                      nb_days=recipe.nb_days, seed=recipe.seed))
    result = train_from_frame(frame, TrainSettings(light_trees=recipe.light_trees, heavy_trees=recipe.heavy_trees,
                                                   anomaly_methods=(recipe.anomaly_method,),
                                                   imbalance=recipe.imbalance, calibration=recipe.calibration,
                                                   review_capacity=recipe.review_capacity))
    save_bundle(result.cascade, root, result.manifest_extras)
    return root


def bench_frame(n: int, n_customers: int = 1000, seed: int = 7):
    """At least ``n`` simulated transactions in time order (about 2,000 a day over 2,000 terminals)."""
    from fraudstream.training.simulator import SimulationConfig, simulate

    days = max(2, int(np.ceil(n / (2.0 * n_customers))) + 1)
    frame = simulate(SimulationConfig(n_customers=n_customers, n_terminals=2 * n_customers, nb_days=days, seed=seed))
    while 0 < len(frame) < n:  # fewer than ~2 a customer a day: simulate as many more days as that takes
        days = int(np.ceil(days * n / len(frame))) + 1
        frame = simulate(SimulationConfig(n_customers=n_customers, n_terminals=2 * n_customers, nb_days=days,
                                          seed=seed))
    return frame.sort_values(["TX_DATETIME", "TRANSACTION_ID"]).head(n).reset_index(drop=True)


# ---- processes -----------------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU time (s) of a process and its children so far."""
    import psutil

    process = psutil.Process(pid)
    times = process.cpu_times()
    return float(times.user + times.system)


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / (1 << 20)
