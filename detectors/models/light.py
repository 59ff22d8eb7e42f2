"""The light stage: a small gradient-boosted tree model with a probability calibration.

Also holds what the heavy stage shares with it: :class:`ProbabilityCalibrator` (isotonic or Platt mapping of
raw scores to fraud probabilities, fitted on validation rows) and :class:`BoostedTreeModel` (XGBoost training with
a deliberate class-imbalance treatment, whole-batch scoring through the compiled tree walker of
:mod:`~fraudstream.detectors.models.tree_walker` or ``inplace_predict``, per-feature contributions, save/load as
XGBoost JSON plus a small metadata JSON).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import xgboost as xgb

from fraudstream.detectors.models.tree_walker import TreeEnsemble

#: Class-imbalance treatments: none, weight the fraud class by n_neg / n_pos, or keep a random share of negatives.
IMBALANCE_CHOICES = ("none", "scale_pos_weight", "downsample")
CALIBRATION_CHOICES = ("isotonic", "platt")
#: Histogram bins per feature (see BoostedTreeModel: fine cut points in the tail of amounts).
DEFAULT_MAX_BIN = 4096
#: Smallest probability Platt scaling works with (avoids log(0)).
_EPS = 1e-7
#: Batches with fewer rows are scored on one thread.  XGBoost's thread pool costs more than it saves on small
#: batches: one row through 300 trees takes 0.11 ms on one thread, 4 to 24 ms on two threads of a busy 2-core
#: machine (threads wait at the pool's barrier).  Scores do not depend on the thread count.
PARALLEL_MIN_ROWS = 2000
#: Batches with fewer rows are scored, and explained approximately, by the compiled tree walker
#: (:class:`~fraudstream.detectors.models.tree_walker.TreeEnsemble`: one thread, XGBoost's results to the bit);
#: larger ones by XGBoost on ``n_jobs`` threads.  A one-thread model uses the walker at every size.
#:
#: Measured (2-core machine, another process busy on one core; median us per call; bench bundle models on their
#: feature rows; "xgb 1t / 2t" = XGBoost on one / two threads)::
#:
#:     rows     light predict: xgb 1t / 2t, walker   heavy predict         light approx contributions
#:     1             163 /   169,     5              171 /   176,     6       228 /    228,      6
#:     100           243 /   219,    52              334 /   284,    99       697 /    465,    259
#:     1,000         954 /   550,   497            1,700 /   969,   959     4,789 /  2,643,  2,525
#:     2,000       1,698 / 1,045,   975            2,928 / 1,781, 1,916     9,137 /  4,951,  5,395
#:     10,000      8,100 / 4,266, 5,033           13,604 / 7,078, 9,613    47,430 / 27,223, 26,172
#:
#: (300 trees of depth 6 on 30 features: predict 204 / 198, 11 at 1 row; 5,004 / 3,098, 2,690 at 1,000 rows.)
#: The walker has no per-call overhead (5 to 10 us against XGBoost's 160 to 230) and is faster than one XGBoost
#: thread at every size; two XGBoost threads catch up between 1,000 and 2,000 rows and win beyond (heavy
#: approximate contributions from 1,000 rows: 4.8 against 6.2 ms).  Below :data:`PARALLEL_MIN_ROWS` XGBoost ran
#: on one thread, so switching there makes no batch size slower.
WALKER_MAX_ROWS = PARALLEL_MIN_ROWS
#: Rows of the check run when a walker is built: they sit on the trees' split conditions, NaN in a tenth of cells.
_WALKER_PROBE_ROWS = 512


class ProbabilityCalibrator:
    """Maps raw model scores in [0, 1] to calibrated fraud probabilities, monotone non-decreasing.

    Parameters
    ----------
    method : ``"isotonic"`` (piecewise-linear through isotonic-regression knots) or ``"platt"`` (logistic on the
        raw score's logit).
    """

    def __init__(self, method: str = "isotonic") -> None:
        if method not in CALIBRATION_CHOICES:
            raise ValueError(f"calibration method: expected one of {CALIBRATION_CHOICES}, got {method!r}")
        self.method = method
        self.knots_x: np.ndarray | None = None
        self.knots_y: np.ndarray | None = None
        self.coef: tuple[float, float] | None = None

    def fit(self, raw: np.ndarray, y: np.ndarray) -> ProbabilityCalibrator:
        raw = np.asarray(raw, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
            self.knots_x = np.asarray(iso.X_thresholds_, dtype=np.float64)
            self.knots_y = np.asarray(iso.y_thresholds_, dtype=np.float64)
        else:
            from sklearn.linear_model import LogisticRegression

            logit = _logit(raw).reshape(-1, 1)
            lr = LogisticRegression(C=1e6).fit(logit, y.astype(int))
            self.coef = (float(lr.coef_[0, 0]), float(lr.intercept_[0]))
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (float64, same shape as ``raw``)."""
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "isotonic":
            if self.knots_x is None or self.knots_y is None:
                raise RuntimeError("calibrator is not fitted")
            return np.interp(raw, self.knots_x, self.knots_y)
        if self.coef is None:
            raise RuntimeError("calibrator is not fitted")
        a, b = self.coef
        return 1.0 / (1.0 + np.exp(-(a * _logit(raw) + b)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "knots_x": None if self.knots_x is None else self.knots_x.tolist(),
            "knots_y": None if self.knots_y is None else self.knots_y.tolist(),
            "coef": None if self.coef is None else list(self.coef),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbabilityCalibrator:
        out = cls(data["method"])
        if data.get("knots_x") is not None:
            out.knots_x = np.asarray(data["knots_x"], dtype=np.float64)
            out.knots_y = np.asarray(data["knots_y"], dtype=np.float64)
        if data.get("coef") is not None:
            out.coef = (float(data["coef"][0]), float(data["coef"][1]))
        return out


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(p / (1.0 - p))


class BoostedTreeModel:
    """XGBoost binary classifier with an imbalance treatment and an optional probability calibration.

    Parameters
    ----------
    n_estimators, max_depth, learning_rate, min_child_weight, subsample, colsample_bytree : XGBoost parameters.
    max_bin : histogram bins per feature.  Fraud hides in the far tail of amounts (e.g. "> 220" is 0.05% of
        traffic); XGBoost's default of 256 quantile bins leaves no cut point there, 4096 does (validation AP
        +0.02 to +0.03 in the handbook protocol).
    imbalance : one of :data:`IMBALANCE_CHOICES`.
    negatives_per_positive : kept negatives per positive when ``imbalance="downsample"``.
    calibration : method of the :class:`ProbabilityCalibrator` fitted by :meth:`calibrate`.
    seed : random seed (down-sampling and XGBoost).
    n_jobs : XGBoost threads.
    """

    def __init__(
        self,
        n_estimators: int = 100,
        max_depth: int = 4,
        learning_rate: float = 0.1,
        min_child_weight: float = 1.0,
        subsample: float = 1.0,
        colsample_bytree: float = 1.0,
        max_bin: int = DEFAULT_MAX_BIN,
        imbalance: str = "none",
        negatives_per_positive: float = 20.0,
        calibration: str = "isotonic",
        seed: int = 0,
        n_jobs: int = 2,
    ) -> None:
        if imbalance not in IMBALANCE_CHOICES:
            raise ValueError(f"imbalance: expected one of {IMBALANCE_CHOICES}, got {imbalance!r}")
        if calibration not in CALIBRATION_CHOICES:
            raise ValueError(f"calibration: expected one of {CALIBRATION_CHOICES}, got {calibration!r}")
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.max_bin = max_bin
        self.imbalance = imbalance
        self.negatives_per_positive = negatives_per_positive
        self.calibration = calibration
        self.seed = seed
        self.n_jobs = n_jobs
        self.booster_: xgb.Booster | None = None
        self.calibrator_: ProbabilityCalibrator | None = None
        self.feature_names_: list[str] | None = None
        self._serial: tuple[xgb.Booster, xgb.Booster] | None = None  # (booster_, its one-thread copy)
        self._walker: tuple[xgb.Booster, TreeEnsemble | None] | None = None  # (booster_, its walker or None)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_walker", None)  # derived from booster_ (compiled loops, checked arrays); rebuilt when used
        return state

    def get_params(self) -> dict[str, Any]:
        return {
            "n_estimators": self.n_estimators, "max_depth": self.max_depth, "learning_rate": self.learning_rate,
            "min_child_weight": self.min_child_weight, "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree, "max_bin": self.max_bin, "imbalance": self.imbalance,
            "negatives_per_positive": self.negatives_per_positive, "calibration": self.calibration,
            "seed": self.seed, "n_jobs": self.n_jobs,
        }

    def _xgb_params(self, y: np.ndarray) -> dict[str, Any]:
        params: dict[str, Any] = {
            "objective": "binary:logistic", "tree_method": "hist", "max_depth": self.max_depth,
            "eta": self.learning_rate, "min_child_weight": self.min_child_weight, "seed": self.seed,
            "subsample": self.subsample, "colsample_bytree": self.colsample_bytree,
            "nthread": self.n_jobs, "eval_metric": "aucpr", "max_bin": self.max_bin,
        }
        if self.imbalance == "scale_pos_weight":
            n_pos = max(int(y.sum()), 1)
            params["scale_pos_weight"] = float((y.size - n_pos) / n_pos)
        return params

    def fit(self, X: np.ndarray, y: np.ndarray, feature_names: list[str] | None = None) -> Self:
        """Train on ``X`` (rows x features, float) and labels ``y`` (0/1); resets any calibration."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y).astype(np.int8)
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
        if y.min(initial=1) == y.max(initial=0):
            raise ValueError("training labels hold a single class; need both fraud and legitimate rows")
        if self.imbalance == "downsample":
            rng = np.random.default_rng(self.seed)
            pos = np.flatnonzero(y == 1)
            neg = np.flatnonzero(y == 0)
            keep = min(neg.size, int(round(pos.size * self.negatives_per_positive)))
            rows = np.sort(np.concatenate([pos, rng.choice(neg, size=keep, replace=False)]))
            X, y = X[rows], y[rows]
        dtrain = xgb.QuantileDMatrix(X, label=y, feature_names=feature_names, max_bin=self.max_bin)
        self.booster_ = xgb.train(self._xgb_params(y), dtrain, num_boost_round=self.n_estimators)
        self.feature_names_ = list(feature_names) if feature_names is not None else None
        self.calibrator_ = None
        return self

    def _booster_for(self, rows: int) -> xgb.Booster:
        """The booster to score ``rows`` rows with: ``n_jobs`` threads from :data:`PARALLEL_MIN_ROWS` rows, else a
        one-thread copy (made once per fitted booster)."""
        if self.booster_ is None:
            raise RuntimeError("model is not fitted")
        if rows >= PARALLEL_MIN_ROWS or self.n_jobs == 1:
            return self.booster_
        serial = getattr(self, "_serial", None)
        if serial is None or serial[0] is not self.booster_:
            copy = self.booster_.copy()
            copy.set_param({"nthread": 1})
            serial = self._serial = (self.booster_, copy)
        return serial[1]

    def tree_walker(self) -> TreeEnsemble | None:
        """The compiled walker of ``booster_``, built once per booster (rebuilt when ``booster_`` is replaced) and
        checked to reproduce XGBoost's probabilities and approximate contributions exactly on rows placed on the
        trees' split conditions; None when the booster is not one the walker reads or the check fails (XGBoost then
        scores every batch)."""
        booster = self.booster_
        if booster is None:
            raise RuntimeError("model is not fitted")
        cached = getattr(self, "_walker", None)
        if cached is None or cached[0] is not booster:
            # checked against the one-thread copy: the thread pool's barrier costs tens of ms on a busy machine
            cached = self._walker = (booster, _checked_walker(booster, self._booster_for(_WALKER_PROBE_ROWS)))
        return cached[1]

    def _walker_for(self, rows: int) -> TreeEnsemble | None:
        """The walker when it should score ``rows`` rows (see :data:`WALKER_MAX_ROWS`), else None."""
        if rows >= WALKER_MAX_ROWS and self.n_jobs > 1:
            return None
        return self.tree_walker()

    def _inputs(self, X: np.ndarray) -> np.ndarray:
        """``X``'s leading columns, as many as the model was fitted on.

        A model fitted on the leading columns of the feature order (the light model reads the screening features,
        not the heavy stage's sequence after them) scores the cascade's whole feature matrix.
        """
        if self.booster_ is None:
            raise RuntimeError("model is not fitted")
        n = self.booster_.num_features()
        if X.ndim != 2 or X.shape[1] < n:
            raise ValueError(f"X: expected (rows, >= {n}) columns in feature order, got shape {X.shape}")
        return X if X.shape[1] == n else X[:, :n]

    def raw_score(self, X: np.ndarray) -> np.ndarray:
        """Uncalibrated model probability per row (whole batch in one call of the tree walker, or of
        ``inplace_predict`` from :data:`WALKER_MAX_ROWS` rows; the same values either way).  Reads the leading
        columns of ``X`` the model was fitted on."""
        X = self._inputs(X)
        if X.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        walker = self._walker_for(X.shape[0])
        if walker is not None:
            return walker.predict_proba(X)
        booster = self._booster_for(X.shape[0])
        return np.asarray(booster.inplace_predict(np.asarray(X, dtype=np.float64)), dtype=np.float64)

    def calibrate(self, X: np.ndarray, y: np.ndarray) -> BoostedTreeModel:
        """Fit the probability calibration on held-out rows (the validation period)."""
        self.calibrator_ = ProbabilityCalibrator(self.calibration).fit(self.raw_score(X), y)
        return self

    def score(self, X: np.ndarray) -> np.ndarray:
        """Calibrated fraud probability per row in [0, 1] (raw probability when not calibrated)."""
        raw = self.raw_score(X)
        return raw if self.calibrator_ is None else np.clip(self.calibrator_.transform(raw), 0.0, 1.0)

    def contributions(self, X: np.ndarray, approximate: bool = False) -> np.ndarray:
        """Per-feature contributions to the margin (rows x features, bias column dropped), via ``pred_contribs``.

        ``approximate``: XGBoost's ``approx_contribs`` (each tree's gain along the row's own path, Saabas) instead
        of exact TreeSHAP; an order of magnitude cheaper, and the same sum (the margin).  Approximate ones come
        from the tree walker below :data:`WALKER_MAX_ROWS` rows (the same values).
        """
        X = self._inputs(X)
        if X.shape[0] == 0:
            return np.zeros((0, X.shape[1]), dtype=np.float64)
        walker = self._walker_for(X.shape[0]) if approximate else None
        if walker is not None:
            return walker.contributions_approx(X)
        booster = self._booster_for(X.shape[0])
        threads = 1 if booster is not self.booster_ else self.n_jobs
        # columns are in the model's feature order (the cascade checks X's shape against its feature names), as
        # for ``inplace_predict``: no names on the matrix, no name check (a fifth of the call on a few rows)
        data = xgb.DMatrix(np.asarray(X, dtype=np.float64), nthread=threads)
        contribs = booster.predict(data, pred_contribs=True, approx_contribs=approximate, validate_features=False)
        return np.asarray(contribs, dtype=np.float64)[:, :-1]

    # ---- persistence -----------------------------------------------------------------------------------------
    def save(self, directory: str | Path, name: str) -> list[Path]:
        """Write ``<name>.json`` (XGBoost model) and ``<name>_meta.json`` (parameters, calibration)."""
        if self.booster_ is None:
            raise RuntimeError("model is not fitted")
        directory = Path(directory)
        model_path = directory / f"{name}.json"
        meta_path = directory / f"{name}_meta.json"
        self.booster_.save_model(str(model_path))
        meta = {
            "class": type(self).__name__,
            "params": self.get_params(),
            "feature_names": self.feature_names_,
            "calibrator": None if self.calibrator_ is None else self.calibrator_.to_dict(),
        }
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
        return [model_path, meta_path]

    @classmethod
    def load(cls, directory: str | Path, name: str) -> Self:
        directory = Path(directory)
        meta = json.loads((directory / f"{name}_meta.json").read_text())
        model = cls(**meta["params"])
        booster = xgb.Booster()
        booster.load_model(str(directory / f"{name}.json"))
        booster.set_param({"nthread": model.n_jobs})
        model.booster_ = booster
        model.feature_names_ = meta.get("feature_names")
        if meta.get("calibrator") is not None:
            model.calibrator_ = ProbabilityCalibrator.from_dict(meta["calibrator"])
        model.tree_walker()  # built (and compiled, once per process) at load, not in the first scored batch
        return model


class LightModel(BoostedTreeModel):
    """The cascade's first model: small and fast (defaults: 100 trees of depth 4, all rows and columns)."""

    def __init__(self, n_estimators: int = 100, max_depth: int = 4, learning_rate: float = 0.1, **params: Any) -> None:
        super().__init__(n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate, **params)


#: Reasons use XGBoost's approximate (per-path, Saabas) contributions rather than exact TreeSHAP: exact TreeSHAP
#: cost most of a cascade call at batch 1,000 (about 0.25 ms per flagged row on a 100-tree model).
APPROXIMATE_CONTRIBUTIONS = True


def tree_contributions(model: BoostedTreeModel, X: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """A boosted-tree stage's explanation: contributions per input (log-odds) and the inputs' names."""
    values = model.contributions(X, approximate=APPROXIMATE_CONTRIBUTIONS)
    names = model.feature_names_ or [f"f{i}" for i in range(values.shape[1])]
    return values, list(names)


class LightStage:
    """The light model as a cascade stage: scores every row (``light_score``), explains with its trees."""

    name: ClassVar[str] = "light"
    routed: ClassVar[bool] = False
    files: ClassVar[tuple[str, ...]] = ("light.json", "light_meta.json")

    def __init__(self, model: LightModel) -> None:
        self.model = model

    def score(self, X: np.ndarray, upstream: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.model.score(X)

    def contributions(self, X: np.ndarray, upstream: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
        return tree_contributions(self.model, X)

    def save(self, directory: Path) -> list[Path]:
        return self.model.save(directory, self.name)

    @classmethod
    def load(cls, directory: Path) -> LightStage:
        return cls(LightModel.load(directory, cls.name))


def _checked_walker(booster: xgb.Booster, reference: xgb.Booster) -> TreeEnsemble | None:
    """A compiled walker of ``booster`` that gave the probabilities and approximate contributions of ``reference``
    (the same model, e.g. its one-thread copy) bit for bit on :data:`_WALKER_PROBE_ROWS` probe rows, else None."""
    try:
        walker = TreeEnsemble.from_booster(booster)
    except ValueError:  # a model the walker does not read (objective, categorical splits, ...)
        return None
    probe = walker.probe_rows(_WALKER_PROBE_ROWS)
    expected = np.asarray(reference.inplace_predict(probe), dtype=np.float64)
    contribs = reference.predict(xgb.DMatrix(probe, nthread=1), pred_contribs=True, approx_contribs=True,
                                 validate_features=False)
    exact = (np.array_equal(walker.predict_proba(probe), expected)
             and np.array_equal(walker.contributions_approx(probe), np.asarray(contribs, dtype=np.float64)[:, :-1]))
    if not exact:
        warnings.warn("the compiled tree walker does not reproduce this XGBoost model exactly on its check rows; "
                      "the model is scored by XGBoost (slower on small batches)", RuntimeWarning, stacklevel=3)
        return None
    return walker
