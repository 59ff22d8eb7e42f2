"""A compiled walk of a binary-logistic XGBoost tree ensemble: margins, probabilities, approximate contributions.

XGBoost costs 0.1 to 0.3 ms per call before it looks at a tree, which is most of a call at the worker's batch
sizes (1 to 1,000 rows, typically 20 to 200).  :class:`TreeEnsemble` reads the trees once from the booster's JSON
model into flat node arrays and walks a whole batch in one compiled loop (numba), with XGBoost's own float32
arithmetic, so that its results are XGBoost's to the bit:

* inputs are rounded to float32 and compared as ``x < split_condition`` (left) in float32; NaN is missing and
  takes the node's default branch; infinities are compared as values (as ``inplace_predict`` does; XGBoost's
  ``DMatrix`` refuses them);
* the margin is summed in float32, tree by tree in model order, from the base margin
  ``-logf(1 / base_score - 1)`` (the JSON model keeps ``base_score`` as a probability);
* the probability is XGBoost's float32 sigmoid, ``1 / (expf(min(-m, 88.7)) + 1 + 1e-16)``;
* the approximate contributions are XGBoost's ``approx_contribs`` (Saabas): along the row's path through each
  tree, the split's feature receives ``mean(child) - mean(parent)``, a node's mean being the mean of its leaves
  weighted by their hessian sums (``sum_hessian``), computed as XGBoost does in float32; a tree's gains are
  summed per feature, then added to the row's totals tree by tree.

Per call on the bench's light model (100 trees of depth 4): 5 us for 1 row and 52 us for 100 rows, against
XGBoost's 163 and 243 us on one thread (figures by batch size at ``models.light.WALKER_MAX_ROWS``).

Only what the cascade trains is read: ``gbtree`` with scalar leaves, ``binary:logistic``, numerical splits, all
trees (``inplace_predict``'s default ``iteration_range``; early stopping's ``best_iteration`` is not applied).
Anything else raises ``ValueError`` in :meth:`TreeEnsemble.from_booster`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

#: Rows walked down one tree side by side by :func:`_margins` (independent loads overlap; a tree's nodes are read
#: from cache once per block).  Per row at 1,000 rows, 300 trees of depth 6: 8 rows 3.8 us, 32 rows 2.5 us,
#: 64 rows 2.4 us (XGBoost's own block is 64 rows too).
_WALK_BLOCK_ROWS = 64
_F32_ONE = np.float32(1.0)
#: XGBoost's sigmoid clamps ``-margin`` here (float32 ``expf`` overflows above 88.72).
_F32_EXP_CAP = np.float32(88.7)
#: XGBoost's sigmoid adds this to its denominator (below float32 resolution next to 1: no effect, kept for form).
_F32_SIGMOID_EPS = np.float32(1e-16)
_SUPPORTED_OBJECTIVES = ("binary:logistic",)


class TreeEnsemble:
    """The trees of a fitted ``binary:logistic`` XGBoost booster as flat node arrays, walked in compiled loops.

    Nodes of all trees share one numbering (tree ``t`` starts at ``roots[t]``).  A leaf's children are itself, so
    a row that reached a leaf stays there whatever it is compared with, and every row of a tree takes the same
    number of steps (the tree's depth).

    Parameters
    ----------
    feature : uint32 (nodes,), the split's feature (column of ``X``); 0 for leaves.
    threshold : float32 (nodes,), the split condition (left when ``x < threshold``); 0 for leaves.
    child : uint32 (2 * nodes,), ``child[2 * node]`` the left child, ``child[2 * node + 1]`` the right one.
    default_child : uint32 (nodes,), the child a missing (NaN) value goes to.
    leaf_value : float32 (nodes,), a leaf's value (log-odds, learning rate applied); 0 for splits.
    mean_value : float32 (nodes,), the node's hessian-weighted mean of its leaves' values (log-odds).
    roots : uint32 (trees,), each tree's root node.
    depths : int64 (trees,), each tree's depth (splits from the root to its deepest leaf).
    n_features : columns a row must have.
    base_margin : float32, the margin every row starts from (log-odds).
    """

    def __init__(self, feature: np.ndarray, threshold: np.ndarray, child: np.ndarray, default_child: np.ndarray,
                 leaf_value: np.ndarray, mean_value: np.ndarray, roots: np.ndarray, depths: np.ndarray,
                 n_features: int, base_margin: np.float32) -> None:
        self.feature = np.ascontiguousarray(feature, dtype=np.uint32)
        self.threshold = np.ascontiguousarray(threshold, dtype=np.float32)
        self.child = np.ascontiguousarray(child, dtype=np.uint32)
        self.default_child = np.ascontiguousarray(default_child, dtype=np.uint32)
        self.leaf_value = np.ascontiguousarray(leaf_value, dtype=np.float32)
        self.mean_value = np.ascontiguousarray(mean_value, dtype=np.float32)
        self.roots = np.ascontiguousarray(roots, dtype=np.uint32)
        self.depths = np.ascontiguousarray(depths, dtype=np.int64)
        self.n_features = int(n_features)
        self.base_margin = np.float32(base_margin)
        self.max_depth = int(self.depths.max(initial=0))
        #: per leaf, its tree's gains by feature (:func:`_path_gains`), built by the first contributions call
        self._gains: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def n_trees(self) -> int:
        return int(self.roots.shape[0])

    # ---- construction --------------------------------------------------------------------------------------
    @classmethod
    def from_booster(cls, booster: Any, warm: bool = True) -> TreeEnsemble:
        """Read a fitted ``xgboost.Booster`` (its JSON model, ``save_raw("json")``).

        ``warm``: compile the loops now, on one row (the first compile in a process takes about a second; later
        ensembles reuse it).  Raises ``ValueError`` for a model this walker does not reproduce.
        """
        model = json.loads(bytes(booster.save_raw("json")))
        ensemble = cls.from_json(model)
        if warm:
            ensemble.warm()
        return ensemble

    @classmethod
    def from_json(cls, model: Mapping[str, Any]) -> TreeEnsemble:
        """Read XGBoost's JSON model (the parsed document of ``save_raw("json")`` or ``save_model("*.json")``)."""
        learner = model["learner"]
        objective = learner["objective"]["name"]
        if objective not in _SUPPORTED_OBJECTIVES:
            raise ValueError(f"tree walker: objective {objective!r} is not supported ({_SUPPORTED_OBJECTIVES})")
        booster = learner["gradient_booster"]
        if booster["name"] != "gbtree":
            raise ValueError(f"tree walker: booster {booster['name']!r} is not supported (gbtree only)")
        params = learner["learner_model_param"]
        if int(params.get("num_target", 1)) != 1 or int(params.get("num_class", 0)) > 1:
            raise ValueError("tree walker: one output only (binary classification)")
        n_features = int(params["num_feature"])
        if n_features < 1:
            raise ValueError("tree walker: the model has no features")
        base_margin = _logistic_base_margin(_base_score(params["base_score"]))
        trees = booster["model"]["trees"]
        if any(int(group) != 0 for group in booster["model"].get("tree_info", [])):
            raise ValueError("tree walker: trees of more than one output group")

        sizes = [len(tree["left_children"]) for tree in trees]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        n_nodes = int(offsets[-1])
        if n_nodes >= np.iinfo(np.uint32).max // 2:
            raise ValueError(f"tree walker: {n_nodes} nodes do not fit 32-bit indices")
        feature = np.zeros(n_nodes, dtype=np.int64)
        threshold = np.zeros(n_nodes, dtype=np.float32)
        left = np.empty(n_nodes, dtype=np.int64)
        right = np.empty(n_nodes, dtype=np.int64)
        default_left = np.zeros(n_nodes, dtype=bool)
        cover = np.zeros(n_nodes, dtype=np.float32)
        condition = np.zeros(n_nodes, dtype=np.float32)
        for t, tree in enumerate(trees):
            if any(int(kind) != 0 for kind in tree.get("split_type", [])):
                raise ValueError("tree walker: categorical splits are not supported")
            if int(tree.get("tree_param", {}).get("size_leaf_vector", "1")) > 1:
                raise ValueError("tree walker: vector leaves are not supported")
            lo, hi = int(offsets[t]), int(offsets[t + 1])
            tree_left = np.asarray(tree["left_children"], dtype=np.int64)
            tree_right = np.asarray(tree["right_children"], dtype=np.int64)
            own = np.arange(lo, hi, dtype=np.int64)
            leaf = tree_left < 0
            left[lo:hi] = np.where(leaf, own, tree_left + lo)
            right[lo:hi] = np.where(leaf, own, tree_right + lo)
            condition[lo:hi] = np.asarray(tree["split_conditions"], dtype=np.float32)
            split_index = np.asarray(tree["split_indices"], dtype=np.int64)
            feature[lo:hi] = np.where(leaf, 0, split_index)
            default_left[lo:hi] = np.asarray(tree["default_left"], dtype=np.int64) != 0
            cover[lo:hi] = np.asarray(tree["sum_hessian"], dtype=np.float32)
        is_leaf = left == np.arange(n_nodes)
        if np.any(feature[~is_leaf] >= n_features) or np.any(feature < 0):
            raise ValueError("tree walker: a split refers to a feature beyond num_feature")
        threshold[~is_leaf] = condition[~is_leaf]
        leaf_value = np.where(is_leaf, condition, np.float32(0.0)).astype(np.float32)
        roots = offsets[:-1]
        node_depth, depths = _node_depths(roots, left, right, is_leaf)
        mean_value = _mean_values(left, right, is_leaf, leaf_value, cover, node_depth)
        child = np.column_stack([left, right]).ravel()
        default_child = np.where(default_left, left, right)
        return cls(feature, threshold, child, default_child, leaf_value, mean_value, roots, depths, n_features,
                   base_margin)

    def warm(self) -> None:
        """Compile the loops (once per process) by running them on one all-missing row."""
        row = np.full((1, self.n_features), np.nan, dtype=np.float32)
        self.predict_proba(row)
        self.contributions_approx(row)

    # ---- scoring ---------------------------------------------------------------------------------------------
    def _values(self, X: np.ndarray) -> tuple[np.ndarray, int]:
        """``X`` as the loops read it, flattened row by row (writable float32), and its number of rows."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"tree walker: expected rows of {self.n_features} features, got shape {X.shape}")
        values = np.ascontiguousarray(X, dtype=np.float32).reshape(-1)
        # one array type, one compiled loop: a read-only view would compile another
        return (values if values.flags.writeable else values.copy()), X.shape[0]

    def margin32(self, X: np.ndarray) -> np.ndarray:
        """Margin per row as XGBoost computes it (float32 (rows,), log-odds)."""
        values, rows = self._values(X)
        out = np.empty(rows, dtype=np.float32)
        if rows:
            _margins(values, self.n_features, self.roots, self.depths, self.feature, self.threshold, self.child,
                     self.default_child, self.leaf_value, self.base_margin, _has_missing(values), out)
        return out

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Margin (log-odds) per row of ``X`` (rows x features, NaN = missing): float64 (rows,), holding XGBoost's
        float32 margin (``output_margin=True``) exactly."""
        return self.margin32(X).astype(np.float64)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class per row of ``X``: float64 (rows,), holding XGBoost's float32
        ``inplace_predict`` result exactly."""
        margins = self.margin32(X)
        out = np.empty_like(margins)
        if margins.shape[0]:
            _sigmoid(margins, out)
        return out.astype(np.float64)

    def contributions_approx(self, X: np.ndarray) -> np.ndarray:
        """Approximate (Saabas) contributions per row and feature: float64 (rows, n_features), log-odds.

        XGBoost's ``pred_contribs=True, approx_contribs=True`` without its last (bias) column, exactly.  A row's
        contributions plus the bias (base margin plus the trees' root means) sum to its margin.
        """
        values, rows = self._values(X)
        out = np.zeros(rows * self.n_features, dtype=np.float32)
        if out.size:
            start, feature, gain = self._leaf_gains()
            _approx_contributions(values, self.n_features, self.roots, self.depths, self.feature, self.threshold,
                                  self.child, self.default_child, start, feature, gain, _has_missing(values), out)
        return out.reshape(rows, self.n_features).astype(np.float64)

    def _leaf_gains(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per leaf, its tree's gains by feature (:func:`_path_gains`), built on first use."""
        gains = self._gains
        if gains is None:
            n_nodes = self.feature.shape[0]
            parent = np.full(n_nodes, -1, dtype=np.int64)
            node = np.arange(n_nodes, dtype=np.int64)
            left, right = self.child[0::2].astype(np.int64), self.child[1::2].astype(np.int64)
            inner = left != node
            parent[left[inner]] = node[inner]
            parent[right[inner]] = node[inner]
            gains = _path_gains(parent, left, self.feature, self.mean_value, self.leaf_value, self.n_features,
                                max(self.max_depth, 1))
            self._gains = gains
        return gains

    def probe_rows(self, rows: int, seed: int = 0) -> np.ndarray:
        """Rows made to sit on the trees' split conditions (float64 (rows, n_features)): per feature, thresholds
        it is split on, exactly or one float32 step either side, and NaN in a tenth of the cells.  For checking
        the walk against XGBoost where a rounding or comparison slip would show."""
        rng = np.random.default_rng(seed)
        out = np.empty((rows, self.n_features), dtype=np.float64)
        is_split = self.child[0::2] != np.arange(self.feature.shape[0])
        for j in range(self.n_features):
            values = self.threshold[is_split & (self.feature == j)]
            if values.size == 0:
                values = np.zeros(1, dtype=np.float32)
            picked = rng.choice(values, size=rows)
            step = rng.integers(-1, 2, size=rows)
            nudged = np.where(step < 0, np.nextafter(picked, np.float32(-np.inf)),
                              np.where(step > 0, np.nextafter(picked, np.float32(np.inf)), picked))
            out[:, j] = nudged.astype(np.float64)
        out[rng.random(out.shape) < 0.1] = np.nan
        return out


def _has_missing(values: np.ndarray) -> bool:
    """Whether the walk's input holds a missing (NaN) value."""
    return bool(np.isnan(values).any())


def _base_score(raw: Any) -> np.float32:
    """``learner_model_param.base_score`` as float32: ``"5E-1"`` (XGBoost 2) or ``"[5E-1]"`` (XGBoost 3)."""
    text = str(raw).strip()
    if text.startswith("["):
        parts = [p for p in text.strip("[]").split(",") if p.strip()]
        if len(parts) != 1:
            raise ValueError(f"tree walker: one base score expected, got {text!r}")
        text = parts[0]
    return np.float32(float(text))


def _logistic_base_margin(base_score: np.float32) -> np.float32:
    """XGBoost's ``ProbToMargin`` of the logistic objective, ``-logf(1 / p - 1)`` in float32."""
    if not 0.0 < float(base_score) < 1.0:
        raise ValueError(f"tree walker: base_score must be in (0, 1) for binary:logistic, got {base_score}")
    return np.float32(_logit32(np.float32(base_score)))


def _node_depths(roots: np.ndarray, left: np.ndarray, right: np.ndarray,
                 is_leaf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth of every node reachable from a root (-1 for unreachable ones) and each tree's depth."""
    node_depth = np.full(left.shape[0], -1, dtype=np.int64)
    tree_of = np.full(left.shape[0], -1, dtype=np.int64)
    frontier = roots.astype(np.int64)
    tree_of[frontier] = np.arange(roots.shape[0])
    level = 0
    while frontier.size:
        node_depth[frontier] = level
        inner = frontier[~is_leaf[frontier]]
        children = np.concatenate([left[inner], right[inner]])
        tree_of[children] = np.concatenate([tree_of[inner], tree_of[inner]])
        frontier = children
        level += 1
    depths = np.zeros(roots.shape[0], dtype=np.int64)
    reached = node_depth >= 0
    np.maximum.at(depths, tree_of[reached], node_depth[reached])
    return node_depth, depths


def _mean_values(left: np.ndarray, right: np.ndarray, is_leaf: np.ndarray, leaf_value: np.ndarray,
                 cover: np.ndarray, node_depth: np.ndarray) -> np.ndarray:
    """Hessian-weighted mean of the leaves under each node, as XGBoost's ``FillNodeMeanValues`` (float32):
    ``(mean(left) * H(left) + mean(right) * H(right)) / H(node)``, deepest nodes first."""
    mean = np.where(is_leaf, leaf_value, np.float32(0.0)).astype(np.float32)
    for level in range(int(node_depth.max(initial=0)), -1, -1):
        nodes = np.flatnonzero((node_depth == level) & ~is_leaf)
        if nodes.size == 0:
            continue
        lc, rc = left[nodes], right[nodes]
        total = mean[lc] * cover[lc]  # float32 products and sum, each rounded as in C++ float arithmetic
        total = total + mean[rc] * cover[rc]
        mean[nodes] = total / cover[nodes]
    return mean


@njit(cache=True, nogil=True)
def _logit32(p: np.float32) -> np.float32:  # pragma: no cover - compiled
    """``-logf(1.0f / p - 1.0f)`` (float32 throughout, libm's ``logf`` as in XGBoost)."""
    one = np.float32(1.0)
    return -np.float32(math.log(one / p - one))


@njit(cache=True, nogil=True)
def _sigmoid(margins: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """XGBoost's float32 sigmoid of each margin into ``out``."""
    for i in range(margins.shape[0]):
        x = min(-margins[i], _F32_EXP_CAP)
        denominator = np.float32(math.exp(x)) + _F32_ONE + _F32_SIGMOID_EPS
        out[i] = _F32_ONE / denominator


@njit(cache=True, nogil=True, inline="always")
def _walk_block(values: np.ndarray, first: np.uint64, width: np.uint64, rows: int, root: np.uint32, depth: int,
                feature: np.ndarray, threshold: np.ndarray, child: np.ndarray, default_child: np.ndarray,
                missing: bool, nodes: np.ndarray) -> None:  # pragma: no cover - compiled
    """``nodes[:rows]`` = the leaf of one tree (from ``root``, ``depth`` steps) that each row of a block reaches,
    the rows starting at ``first`` in ``values`` side by side (the rows' loads overlap), a leaf stepping to itself.
    ``missing``: whether ``values`` holds NaN at all; without, the check is skipped (a fifth of the time of a
    step)."""
    for k in range(rows):
        nodes[k] = root
    for _ in range(depth):
        row = first
        for k in range(rows):
            node = np.uint64(nodes[k])
            x = values[row + np.uint64(feature[node])]
            if missing and np.isnan(x):
                nodes[k] = default_child[node]
            else:
                nodes[k] = child[np.uint64(2) * node + np.uint64(not x < threshold[node])]
            row += width


@njit(cache=True, nogil=True)
def _margins(values: np.ndarray, n_features: int, roots: np.ndarray, depths: np.ndarray, feature: np.ndarray,
             threshold: np.ndarray, child: np.ndarray, default_child: np.ndarray, leaf_value: np.ndarray,
             base_margin: np.float32, missing: bool, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Per row, the base margin plus the value of the leaf the row reaches in each tree (float32, tree order).

    ``values`` is the batch flattened row by row.  Blocks of :data:`_WALK_BLOCK_ROWS` rows go down a tree
    together (its nodes stay in cache, the rows' loads overlap), each for the tree's depth in steps, a leaf
    stepping to itself (:func:`_walk_block`).  Indices are unsigned: numba then skips its negative-index
    wraparound (half the time of a step).
    """
    n = values.shape[0] // n_features
    width = np.uint64(n_features)
    nodes = np.empty(_WALK_BLOCK_ROWS, dtype=np.uint32)
    acc = np.empty(_WALK_BLOCK_ROWS, dtype=np.float32)
    for start in range(0, n, _WALK_BLOCK_ROWS):
        rows = min(_WALK_BLOCK_ROWS, n - start)
        first = np.uint64(start) * width
        for k in range(rows):
            acc[k] = base_margin
        for t in range(roots.shape[0]):
            root = roots[t]
            _walk_block(values, first, width, rows, root, depths[t], feature, threshold, child, default_child,
                        missing, nodes)
            for k in range(rows):
                acc[k] += leaf_value[np.uint64(nodes[k])]
        for k in range(rows):
            out[start + k] = acc[k]


@njit(cache=True, nogil=True)
def _path_gains(parent: np.ndarray, left: np.ndarray, feature: np.ndarray, mean_value: np.ndarray,
                leaf_value: np.ndarray, n_features: int,
                max_depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """For every leaf, what a row ending there adds to its contributions for that tree, as XGBoost's
    ``CalculateApproxContributions`` sums it: along the path from the root, each split adds ``mean(child) -
    mean(node)`` (float32) to its feature in a per-tree buffer, the leaf adds ``leaf - mean(leaf)`` to the last
    split's; the buffer's features in path order, each once.  A tree's gains depend on the leaf only, not on the
    values that led there.

    Returns CSR arrays: leaf ``node``'s gains are ``feature[start[node]:start[node + 1]]`` (uint32) and
    ``gain[...]`` (float32); inner nodes have none.
    """
    n = parent.shape[0]
    start = np.zeros(n + 1, dtype=np.int64)
    out_feature = np.empty(n * max_depth, dtype=np.uint32)
    out_gain = np.empty(n * max_depth, dtype=np.float32)
    scratch = np.zeros(n_features, dtype=np.float32)
    seen = np.full(n_features, -1, dtype=np.int64)
    path = np.empty(max_depth + 1, dtype=np.int64)
    used = 0
    for leaf in range(n):
        start[leaf] = used
        if left[leaf] != leaf:
            continue
        steps = 0
        node = leaf
        while parent[node] >= 0:
            node = parent[node]
            path[steps] = node
            steps += 1
        if steps == 0:
            continue
        split = 0
        for i in range(steps - 1, -1, -1):  # root first
            node = path[i]
            nxt = path[i - 1] if i > 0 else leaf
            split = feature[node]
            scratch[split] += mean_value[nxt] - mean_value[node]
        scratch[split] += leaf_value[leaf] - mean_value[leaf]
        for i in range(steps - 1, -1, -1):
            f = feature[path[i]]
            if seen[f] != leaf:
                seen[f] = leaf
                out_feature[used] = f
                out_gain[used] = scratch[f]
                used += 1
        for i in range(steps):
            scratch[feature[path[i]]] = 0.0
    start[n] = used
    return start, out_feature[:used].copy(), out_gain[:used].copy()


@njit(cache=True, nogil=True)
def _approx_contributions(values: np.ndarray, n_features: int, roots: np.ndarray, depths: np.ndarray,
                          feature: np.ndarray, threshold: np.ndarray, child: np.ndarray, default_child: np.ndarray,
                          gain_start: np.ndarray, gain_feature: np.ndarray, gain: np.ndarray, missing: bool,
                          out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Saabas contributions into ``out`` (float32, flattened (rows, features), zeros on entry), as XGBoost's
    ``approx_contribs``: per tree in model order, the row's leaf (walked as in :func:`_margins`, blocks of rows
    side by side) adds its tree's gains (:func:`_path_gains`) to the row's totals.  Walking to the leaf first and
    adding precomputed gains costs half of following each row's path with its buffer (13 -> 6 us a flagged row
    on 400 trees of depth 4)."""
    n = values.shape[0] // n_features
    width = np.uint64(n_features)
    nodes = np.empty(_WALK_BLOCK_ROWS, dtype=np.uint32)
    for start in range(0, n, _WALK_BLOCK_ROWS):
        rows = min(_WALK_BLOCK_ROWS, n - start)
        first = np.uint64(start) * width
        for t in range(roots.shape[0]):
            root = roots[t]
            _walk_block(values, first, width, rows, root, depths[t], feature, threshold, child, default_child,
                        missing, nodes)
            row = first
            for k in range(rows):
                leaf = np.uint64(nodes[k])
                for j in range(gain_start[leaf], gain_start[leaf + np.uint64(1)]):
                    out[row + np.uint64(gain_feature[j])] += gain[j]
                row += width
