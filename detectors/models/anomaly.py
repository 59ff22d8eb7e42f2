"""The anomaly stage: an unsupervised PyOD detector fitted on legitimate traffic.

Its raw score is mapped to [0, 1] by rank among the raw scores of the (legitimate) training rows: the empirical
CDF, so 0.99 means "more anomalous than 99% of legitimate training traffic".

Row independence: PyOD's ECOD and COPOD score a batch by ranking it *together with* the training data, so a
row's score depends on the other rows of its batch (and each call costs O(training rows)).  The stream must give
a row the same score whatever batch it arrives in, so for those two methods fraudstream scores every row as PyOD
scores a batch of that one row: tail probabilities against the stored training columns (binary search, vectorized
over the batch), with the skewness sign of the training data.  IForest and HBOS are row-independent as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ANOMALY_METHODS = ("ECOD", "IForest", "COPOD", "HBOS")
#: Methods scored by fraudstream's row-independent tail-probability path.
_TAIL_METHODS = ("ECOD", "COPOD")


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
    """

    def __init__(self, method: str = "IForest", max_train_rows: int = 20_000, seed: int = 0, n_jobs: int = 1,
                 columns: tuple[int, ...] | None = None) -> None:
        if method not in ANOMALY_METHODS:
            raise ValueError(f"anomaly method: expected one of {ANOMALY_METHODS}, got {method!r}")
        self.method = method
        self.max_train_rows = max_train_rows
        self.seed = seed
        self.n_jobs = n_jobs
        self.columns = None if columns is None else tuple(int(c) for c in columns)
        self.detector_: Any = None
        self.sorted_train_columns_: np.ndarray | None = None  # tail methods: training values sorted per column
        self.skew_sign_: np.ndarray | None = None
        self.reference_scores_: np.ndarray | None = None  # sorted raw scores of the training rows

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> "AnomalyModel":
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
        return np.asarray(self.detector_.decision_function(X), dtype=np.float64)

    def score(self, X: np.ndarray) -> np.ndarray:
        """Share of legitimate training rows with a raw score <= this row's (float64 in [0, 1])."""
        raw = self.raw_score(X)
        ref = self.reference_scores_
        return np.searchsorted(ref, raw, side="right").astype(np.float64) / ref.size

    def _tail_score(self, X: np.ndarray) -> np.ndarray:
        """ECOD / COPOD outlier score of each row as if it were scored alone against the training data."""
        cols = self.sorted_train_columns_
        n = cols.shape[0]
        total = n + 1  # the training rows plus the row itself, as PyOD's ranking of a one-row batch
        u_left = np.empty_like(X)
        u_right = np.empty_like(X)
        for j in range(X.shape[1]):
            below_or_equal = np.searchsorted(cols[:, j], X[:, j], side="right") + 1
            above_or_equal = n - np.searchsorted(cols[:, j], X[:, j], side="left") + 1
            u_left[:, j] = -np.log(below_or_equal / total)
            u_right[:, j] = -np.log(above_or_equal / total)
        s = self.skew_sign_
        u_skew = u_left * -1 * np.sign(s - 1) + u_right * np.sign(s + 1)
        if self.method == "ECOD":
            outlier = np.maximum(np.maximum(u_left, u_right), u_skew)
        else:
            outlier = np.maximum(u_skew, (u_left + u_right) / 2)
        return outlier.sum(axis=1)


def _skew(X: np.ndarray) -> np.ndarray:
    """Sample skewness per column (0 for constant columns)."""
    centered = X - X.mean(axis=0)
    m2 = (centered**2).mean(axis=0)
    m3 = (centered**3).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = m3 / np.power(m2, 1.5)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


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
) -> tuple[AnomalyModel, dict[str, dict[str, float]]]:
    """Fit each method on legitimate training rows; keep the best validation average precision.

    Returns the chosen fitted model and ``{method: {"average_precision", "roc_auc", "fit_s", "score_s"}}``.
    """
    import time

    from sklearn.metrics import average_precision_score, roc_auc_score

    if not methods:
        raise ValueError("no anomaly method to choose from")
    table: dict[str, dict[str, float]] = {}
    best: tuple[float, AnomalyModel] | None = None
    has_both = 0 < int(np.sum(y_valid)) < len(y_valid)
    for method in methods:
        t0 = time.perf_counter()
        model = AnomalyModel(method, max_train_rows=max_train_rows, seed=seed, n_jobs=n_jobs,
                             columns=columns).fit(X_train, y_train)
        t1 = time.perf_counter()
        scores = model.raw_score(X_valid)
        t2 = time.perf_counter()
        ap = float(average_precision_score(y_valid, scores)) if has_both else float("nan")
        auc = float(roc_auc_score(y_valid, scores)) if has_both else float("nan")
        table[method] = {"average_precision": ap, "roc_auc": auc, "fit_s": t1 - t0, "score_s": t2 - t1}
        key = ap if np.isfinite(ap) else -1.0
        if best is None or key > best[0]:
            best = (key, model)
    return best[1], table
