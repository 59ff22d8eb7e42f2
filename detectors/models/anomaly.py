"""The anomaly stage: an unsupervised PyOD detector fitted on legitimate traffic.

Its raw score is mapped to [0, 1] by rank among the raw scores of the (legitimate) training rows: the empirical
CDF, so 0.99 means "more anomalous than 99% of legitimate training traffic".

Row independence: PyOD's ECOD and COPOD score a batch by ranking it *together with* the training data, so a
row's score depends on the other rows of its batch (and each call costs O(training rows)).  The stream must give
a row the same score whatever batch it arrives in, so for those two methods fraudstream scores every row as PyOD
scores a batch of that one row: tail probabilities against the stored training columns (binary search, vectorized
over the batch), with the skewness sign of the training data.  IForest and HBOS are row-independent as they are.

Serving cost: scikit-learn scores an isolation forest tree by tree in Python, 3 to 10 ms per call whatever the
batch size.  fraudstream walks all trees of all rows in one compiled loop over flat node arrays instead
(:class:`_ForestPaths`, numba), with the same float32 inputs, comparisons and summation order, so the raw scores
are bit-for-bit scikit-learn's (checked when the walker is built; scikit-learn scores when the check fails).
:func:`select_anomaly_model` measures each candidate's time per call and leaves out those over a budget.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numba import njit

ANOMALY_METHODS = ("ECOD", "IForest", "COPOD", "HBOS")
#: Tails in which a column's value counts as anomalous (``AnomalyModel(sides=...)``, tail methods only).
TAIL_SIDES = ("both", "right", "left")
#: Methods scored by fraudstream's row-independent tail-probability path.
_TAIL_METHODS = ("ECOD", "COPOD")
#: Rows of the probe that checks :class:`_ForestPaths` against scikit-learn when it is built.
_FOREST_PROBE_ROWS = 256
#: Default budget of one anomaly-detector call on a one-row batch (ms), see :func:`select_anomaly_model`.
DEFAULT_MAX_CALL_MS = 2.0
#: Rows of the larger batch timed during selection, and timed calls per batch size.
_TIMING_BATCH_ROWS = 1000
_TIMING_REPEATS_SMALL = 7
_TIMING_REPEATS_LARGE = 3
MS_PER_S = 1000.0


def _make_detector(method: str, seed: int, n_jobs: int) -> Any:
    if method == "ECOD":
        from pyod.models.ecod import ECOD

        return ECOD()
    if method == "COPOD":
        from pyod.models.copod import COPOD

        return COPOD()
    if method == "IForest":
        from pyod.models.iforest import IForest

        return IForest(n_estimators=100, random_state=seed, n_jobs=n_jobs)
    if method == "HBOS":
        from pyod.models.hbos import HBOS

        return HBOS()
    raise ValueError(f"anomaly method: expected one of {ANOMALY_METHODS}, got {method!r}")


class AnomalyModel:
    """PyOD detector on legitimate rows, scored as an empirical CDF in [0, 1].

    Parameters
    ----------
    method : one of :data:`ANOMALY_METHODS`.
    max_train_rows : legitimate rows kept (random subsample) for fitting and for the CDF reference.
    seed : random seed of the subsample and of IForest.
    n_jobs : threads of IForest.
    columns : indices of the columns of ``X`` the detector looks at (None = all); the cascade passes the
        behavioural features (``definition.ANOMALY_FEATURES``).
    sides : ECOD and COPOD only: per looked-at column, the tail in which a value is anomalous, ``"right"``
        (large), ``"left"`` (small) or ``"both"`` (the method's own rule: ECOD the larger tail, COPOD its
        skewness-corrected mix); None = ``"both"`` for every column, PyOD's behaviour.  A count is anomalous only
        when large: with ``"both"`` its common small values also add to the score and dilute the rare large ones
        (``definition.ANOMALY_FEATURE_SIDES``).
    """

    def __init__(self, method: str = "IForest", max_train_rows: int = 20_000, seed: int = 0, n_jobs: int = 1,
                 columns: tuple[int, ...] | None = None, sides: tuple[str, ...] | None = None) -> None:
        if method not in ANOMALY_METHODS:
            raise ValueError(f"anomaly method: expected one of {ANOMALY_METHODS}, got {method!r}")
        if sides is not None:
            sides = tuple(sides)
            unknown = sorted(set(sides) - set(TAIL_SIDES))
            if unknown:
                raise ValueError(f"anomaly sides: expected each of {TAIL_SIDES}, got {unknown}")
            if columns is not None and len(sides) != len(columns):
                raise ValueError(f"anomaly sides: {len(sides)} given for {len(columns)} columns")
        self.method = method
        self.max_train_rows = max_train_rows
        self.seed = seed
        self.n_jobs = n_jobs
        self.columns = None if columns is None else tuple(int(c) for c in columns)
        self.sides = sides
        self.detector_: Any = None
        self.sorted_train_columns_: np.ndarray | None = None  # tail methods: training values sorted per column
        self.skew_sign_: np.ndarray | None = None
        self.reference_scores_: np.ndarray | None = None  # sorted raw scores of the training rows
        self._forest_paths: _ForestPaths | None = None  # IForest: all-trees walker (built on first use)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_forest_paths", None)  # derived from the detector; rebuilt after loading
        return state

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> AnomalyModel:
        """Fit on the rows of ``X`` with ``y == 0`` (all rows when ``y`` is None), subsampled."""
        X = self._select(X)
        if y is not None:
            X = X[np.asarray(y) == 0]
        if X.shape[0] < 2:
            raise ValueError(f"anomaly detector needs at least 2 legitimate training rows, got {X.shape[0]}")
        if X.shape[0] > self.max_train_rows:
            rng = np.random.default_rng(self.seed)
            X = X[np.sort(rng.choice(X.shape[0], size=self.max_train_rows, replace=False))]
        self.detector_ = _make_detector(self.method, self.seed, self.n_jobs)
        self.detector_.fit(X)
        if self.method in _TAIL_METHODS:
            self.sorted_train_columns_ = np.sort(X, axis=0)
            self.skew_sign_ = np.sign(_skew(X))
        self.reference_scores_ = np.sort(self._raw_score_selected(X))
        return self

    def _select(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return X if self.columns is None else X[:, list(self.columns)]

    def raw_score(self, X: np.ndarray) -> np.ndarray:
        """The detector's raw outlier score per row (larger = more anomalous), row-independent."""
        if self.detector_ is None:
            raise RuntimeError("anomaly model is not fitted")
        return self._raw_score_selected(self._select(X))

    def _raw_score_selected(self, X: np.ndarray) -> np.ndarray:
        if X.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        if self.method in _TAIL_METHODS:
            return self._tail_score(X)
        if self.method == "IForest":
            paths = self._paths()
            if paths is not None:
                return paths.raw_score(X)
        return np.asarray(self.detector_.decision_function(X), dtype=np.float64)

    def _paths(self) -> _ForestPaths | None:
        """The IForest walker, built and checked against scikit-learn once (None: scikit-learn scores)."""
        paths = getattr(self, "_forest_paths", None)
        if paths is None:
            paths = _ForestPaths.build(self.detector_.detector_)
            self._forest_paths = paths
        return paths if paths.exact else None

    def score(self, X: np.ndarray) -> np.ndarray:
        """Share of legitimate training rows with a raw score <= this row's (float64 in [0, 1])."""
        raw = self.raw_score(X)
        ref = self.reference_scores_
        if ref is None:
            raise RuntimeError("anomaly detector is not fitted")
        return np.searchsorted(ref, raw, side="right").astype(np.float64) / ref.size

    def _tail_score(self, X: np.ndarray) -> np.ndarray:
        """ECOD / COPOD outlier score of each row as if it were scored alone against the training data."""
        cols, s = self.sorted_train_columns_, self.skew_sign_
        if cols is None or s is None:
            raise RuntimeError(f"{self.method}: no sorted training columns (not fitted, or not a tail method)")
        n = cols.shape[0]
        total = n + 1  # the training rows plus the row itself, as PyOD's ranking of a one-row batch
        u_left = np.empty_like(X)
        u_right = np.empty_like(X)
        for j in range(X.shape[1]):
            below_or_equal = np.searchsorted(cols[:, j], X[:, j], side="right") + 1
            above_or_equal = n - np.searchsorted(cols[:, j], X[:, j], side="left") + 1
            u_left[:, j] = -np.log(below_or_equal / total)
            u_right[:, j] = -np.log(above_or_equal / total)
        u_skew = u_left * -1 * np.sign(s - 1) + u_right * np.sign(s + 1)
        if self.method == "ECOD":
            outlier = np.maximum(np.maximum(u_left, u_right), u_skew)
        else:
            outlier = np.maximum(u_skew, (u_left + u_right) / 2)
        sides = getattr(self, "sides", None)  # bundles pickled before ``sides`` existed: both tails
        if sides is not None:
            if len(sides) != X.shape[1]:
                raise ValueError(f"anomaly sides: {len(sides)} given for {X.shape[1]} columns")
            for j, side in enumerate(sides):
                if side == "right":
                    outlier[:, j] = u_right[:, j]
                elif side == "left":
                    outlier[:, j] = u_left[:, j]
        return outlier.sum(axis=1)


class _ForestPaths:
    """All trees of a fitted scikit-learn ``IsolationForest`` as flat node arrays, walked for a whole batch in one
    compiled loop (:func:`_path_length_sums`): PyOD's IForest raw score (``-decision_function``), 1.2 us per row
    at 1,000 rows on a 100-tree forest (the earlier numpy level-by-level walk: 7.4 us).

    Bit-for-bit with scikit-learn: inputs rounded to float32 then compared (as float64) with ``<=`` to the
    thresholds, leaf values ``path length + average path length - 1`` summed tree by tree in order.
    :attr:`exact` tells whether that held on a probe of threshold values when built.
    """

    def __init__(self, forest: Any) -> None:
        from sklearn.ensemble._iforest import _average_path_length

        offsets = np.cumsum([0] + [est.tree_.node_count for est in forest.estimators_])
        self.roots = offsets[:-1].astype(np.uint32)
        self.depth = max(int(est.tree_.max_depth) for est in forest.estimators_)
        feature, threshold, child, leaf_value = [], [], [], []
        for t, (est, cols) in enumerate(zip(forest.estimators_, forest.estimators_features_)):
            tree = est.tree_
            leaf = tree.children_left < 0
            own = np.arange(tree.node_count) + offsets[t]
            left = np.where(leaf, own, tree.children_left + offsets[t])
            right = np.where(leaf, own, tree.children_right + offsets[t])
            feature.append(np.where(leaf, 0, np.asarray(cols)[np.maximum(tree.feature, 0)]))
            threshold.append(np.where(leaf, np.inf, tree.threshold))
            child.append(np.column_stack([right, left]).ravel())  # child[2 * node + (x <= threshold)]
            leaf_value.append(forest._decision_path_lengths[t] + forest._average_path_length_per_tree[t] - 1.0)
        self.feature = np.concatenate(feature).astype(np.uint32)
        self.threshold = np.concatenate(threshold).astype(np.float64)
        self.child = np.concatenate(child).astype(np.uint32)
        self.leaf_value = np.concatenate(leaf_value).astype(np.float64)
        self.denominator = len(forest.estimators_) * _average_path_length([forest._max_samples])
        self.offset = forest.offset_
        self.n_features = int(forest.n_features_in_)
        self.exact = False

    @classmethod
    def build(cls, forest: Any) -> _ForestPaths:
        """Build, then check against scikit-learn on rows made of the forest's own thresholds."""
        try:
            paths = cls(forest)
        except (AttributeError, ImportError, ValueError, TypeError):  # another scikit-learn layout
            out = cls.__new__(cls)
            out.exact = False
            return out
        rng = np.random.default_rng(0)
        probe = np.empty((_FOREST_PROBE_ROWS, paths.n_features))
        for j in range(paths.n_features):
            values = paths.threshold[(paths.feature == j) & np.isfinite(paths.threshold)]
            values = values if values.size else np.zeros(1)
            probe[:, j] = rng.choice(values, size=_FOREST_PROBE_ROWS) + rng.choice([0.0, 1e-7, -1e-7],
                                                                                    size=_FOREST_PROBE_ROWS)
        expected = np.asarray(forest.decision_function(probe), dtype=np.float64) * -1  # PyOD's invert_order
        paths.exact = bool(np.array_equal(paths.raw_score(probe), expected)
                           and np.array_equal(paths.raw_score(probe[:1]), expected[:1]))
        return paths

    def raw_score(self, X: np.ndarray) -> np.ndarray:
        """PyOD IForest raw score (larger = more anomalous) of each row of ``X`` (finite values)."""
        if not np.isfinite(X).all():
            raise ValueError("anomaly detector input holds NaN or infinity")
        values = np.ascontiguousarray(X.astype(np.float32).astype(np.float64)).reshape(-1)
        depths = _path_length_sums(values, self.n_features, self.roots, self.feature, self.threshold, self.child,
                                   self.leaf_value, self.depth)
        scores = 2 ** (-np.divide(depths, self.denominator, out=np.ones_like(depths),
                                  where=self.denominator != 0))
        return ((-scores) - self.offset) * -1


#: Rows :func:`_path_length_sums` walks down a tree side by side (independent loads overlap).
_WALK_BLOCK_ROWS = 8


@njit(cache=True, nogil=True)
def _path_length_sums(values: np.ndarray, n_features: int, roots: np.ndarray, feature: np.ndarray,
                      threshold: np.ndarray, child: np.ndarray, leaf_value: np.ndarray,
                      depth: int) -> np.ndarray:  # pragma: no cover - compiled
    """Per row of ``values`` (the batch flattened row by row), the sum over trees (added in tree order) of the leaf
    value the row reaches.

    Tree by tree (its nodes stay in cache), ``depth`` steps for every row: a leaf's threshold is +inf and both its
    children are itself, so a row that reached a leaf stays there.  Indices are unsigned (``uint32`` arrays,
    ``uint64`` arithmetic): numba then skips its negative-index wraparound, which took half of a step (2.2 -> 1.2
    us a row on a 100-tree forest at 1,000 rows).
    """
    n = values.shape[0] // n_features
    width = np.uint64(n_features)
    out = np.zeros(n, dtype=np.float64)
    nodes = np.empty(_WALK_BLOCK_ROWS, dtype=np.uint32)
    for t in range(roots.shape[0]):
        root = roots[t]
        for start in range(0, n, _WALK_BLOCK_ROWS):
            rows = min(_WALK_BLOCK_ROWS, n - start)
            for k in range(rows):
                nodes[k] = root
            for _ in range(depth):
                row = np.uint64(start) * width
                for k in range(rows):
                    node = np.uint64(nodes[k])
                    x = values[row + np.uint64(feature[node])]
                    nodes[k] = child[np.uint64(2) * node + np.uint64(x <= threshold[node])]
                    row += width
            for k in range(rows):
                out[start + k] += leaf_value[np.uint64(nodes[k])]
    return out


def _skew(X: np.ndarray) -> np.ndarray:
    """Sample skewness per column (0 for constant columns)."""
    centered = X - X.mean(axis=0)
    m2 = (centered**2).mean(axis=0)
    m3 = (centered**3).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = m3 / np.power(m2, 1.5)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def serving_call_ms(model: AnomalyModel, X: np.ndarray, rows: int, repeats: int) -> float:
    """Fastest of ``repeats`` timed ``model.score`` calls on a batch of ``rows`` rows cut from ``X`` (ms)."""
    import time

    batch = X[np.arange(rows) % X.shape[0]]
    model.score(batch)  # first call builds any cached structure
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.score(batch)
        best = min(best, time.perf_counter() - t0)
    return best * MS_PER_S


def select_anomaly_model(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    methods: tuple[str, ...] = ANOMALY_METHODS,
    max_train_rows: int = 20_000,
    seed: int = 0,
    n_jobs: int = 1,
    columns: tuple[int, ...] | None = None,
    max_call_ms: float = DEFAULT_MAX_CALL_MS,
    sides: tuple[str, ...] | None = None,
    criterion: Callable[[np.ndarray], dict[str, float]] | None = None,
    ranking: Callable[[dict[str, Any]], Any] | None = None,
) -> tuple[AnomalyModel, dict[str, dict[str, float]]]:
    """Fit each method on legitimate training rows; keep the best on validation among the methods that score a
    one-row batch within ``max_call_ms`` (ms; ``inf`` = no budget).

    "Best" is the largest validation average precision, unless ``criterion`` (more figures from a method's
    validation raw scores, added to its row of the table) and ``ranking`` (a sort key of that row, larger is
    better) say otherwise; training passes the frauds the light model misses
    (:mod:`fraudstream.training.detector_choice`).  ``sides`` goes to the tail methods (ECOD, COPOD).

    Returns the chosen fitted model and ``{method: {"average_precision", "roc_auc", "fit_s", "score_s",
    "call_ms_1row", "call_ms_1000rows", "within_budget"}}`` (call times: fastest of a few calls of
    :meth:`AnomalyModel.score`, the serving path).  Raises ``ValueError`` when no method fits the budget.
    """
    import time

    from sklearn.metrics import average_precision_score, roc_auc_score

    if not methods:
        raise ValueError("no anomaly method to choose from")
    table: dict[str, dict[str, Any]] = {}
    best: tuple[Any, AnomalyModel] | None = None
    has_both = 0 < int(np.sum(y_valid)) < len(y_valid)
    for method in methods:
        t0 = time.perf_counter()
        model = AnomalyModel(method, max_train_rows=max_train_rows, seed=seed, n_jobs=n_jobs,
                             columns=columns, sides=sides if method in _TAIL_METHODS else None).fit(X_train, y_train)
        t1 = time.perf_counter()
        scores = model.raw_score(X_valid)
        t2 = time.perf_counter()
        ap = float(average_precision_score(y_valid, scores)) if has_both else float("nan")
        auc = float(roc_auc_score(y_valid, scores)) if has_both else float("nan")
        probe = np.asarray(X_valid if len(X_valid) else X_train, dtype=np.float64)
        one = serving_call_ms(model, probe, 1, _TIMING_REPEATS_SMALL)
        many = serving_call_ms(model, probe, _TIMING_BATCH_ROWS, _TIMING_REPEATS_LARGE)
        fits = bool(one <= max_call_ms)
        table[method] = {"average_precision": ap, "roc_auc": auc, "fit_s": t1 - t0, "score_s": t2 - t1,
                         "call_ms_1row": one, "call_ms_1000rows": many, "within_budget": fits}
        if criterion is not None:
            table[method].update(criterion(scores))
        key = ranking(table[method]) if ranking is not None else (ap if np.isfinite(ap) else -1.0)
        if fits and (best is None or key > best[0]):
            best = (key, model)
    if best is None:
        times = ", ".join(f"{m} {t['call_ms_1row']:.2f} ms" for m, t in table.items())
        raise ValueError(f"anomaly detector: no method scores a one-row batch within the budget of {max_call_ms} ms "
                         f"({times}); add a faster method or raise the budget (anomaly_max_call_ms)")
    return best[1], table


class AnomalyStage:
    """The anomaly detector as a cascade stage: scores every row (``anomaly_score``), no per-input explanation.

    Saved as a pickle (``anomaly.pkl``): load only bundles you trust.
    """

    name: ClassVar[str] = "anomaly"
    routed: ClassVar[bool] = False
    files: ClassVar[tuple[str, ...]] = ("anomaly.pkl",)

    def __init__(self, model: AnomalyModel) -> None:
        self.model = model

    def score(self, X: np.ndarray, upstream: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.model.score(X)

    def contributions(self, X: np.ndarray, upstream: Mapping[str, np.ndarray]) -> None:
        return None

    def save(self, directory: Path) -> list[Path]:
        path = Path(directory) / self.files[0]
        with path.open("wb") as fh:
            pickle.dump(self.model, fh, protocol=pickle.HIGHEST_PROTOCOL)
        return [path]

    @classmethod
    def load(cls, directory: Path) -> AnomalyStage:
        with (Path(directory) / cls.files[0]).open("rb") as fh:
            return cls(pickle.load(fh))
