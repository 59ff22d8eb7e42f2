"""Input drift: population stability index (PSI) of live values against a training reference.

At training time :func:`reference_histograms` cuts each watched signal (light score, anomaly score, a few key
features) into bins at the quantiles of its reference values and stores the share of the reference in each bin.
Live, :class:`DriftWindow` counts a micro-batch's values per bin in one vectorized call and keeps the counts of
the most recent events (a sliding window of batches); :meth:`DriftWindow.psi` compares the window's shares with
the reference's::

    PSI = sum over bins of (live share - reference share) * ln(live share / reference share)

with both shares floored at :data:`SHARE_FLOOR` so an empty bin does not give an infinite PSI.  Rules of thumb:
under 0.1 stable, 0.1-0.2 moderate shift, above 0.2 a significant shift.  Pure: no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Bins per signal (deciles of the reference).
REFERENCE_BINS = 10
#: Smallest share used in the PSI sum (empty bins).
SHARE_FLOOR = 1e-4
#: Events the live window holds (about 20 s of traffic at 1,000 tx/s).
DEFAULT_WINDOW_EVENTS = 20_000
#: Fewest events in the window before a PSI is reported (fewer give noisy shares).
MIN_WINDOW_EVENTS = 500
#: Signals watched besides the features: names of the light and anomaly scores.
LIGHT_SCORE, ANOMALY_SCORE = "light_score", "anomaly_score"
#: Key features watched (those present in the model's feature list).
DRIFT_FEATURES = ("TX_AMOUNT", "CUSTOMER_ID_NB_TX_1DAY_WINDOW", "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW",
                  "TERMINAL_ID_RISK_7DAY_WINDOW", "CUSTOMER_AMOUNT_RATIO_HISTORY")
FORMAT = 1


@dataclass(frozen=True)
class ReferenceHistogram:
    """Bins of one signal and the share of the reference values in each.

    ``edges`` are the inner bin edges (increasing, length k - 1); bin 0 is ``(-inf, edges[0]]``, bin i is
    ``(edges[i-1], edges[i]]``, the last is ``(edges[-1], inf)``.  ``shares`` has length k and sums to 1.
    """

    edges: np.ndarray
    shares: np.ndarray

    def counts(self, values: np.ndarray) -> np.ndarray:
        """Number of finite ``values`` in each bin (int64, length k); nan values are not counted."""
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        return np.bincount(np.searchsorted(self.edges, values, side="left"),
                           minlength=self.edges.size + 1).astype(np.int64)

    def to_dict(self) -> dict[str, list[float]]:
        return {"edges": self.edges.tolist(), "shares": self.shares.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceHistogram:
        edges = np.asarray(data["edges"], dtype=np.float64)
        shares = np.asarray(data["shares"], dtype=np.float64)
        if shares.size != edges.size + 1 or np.any(np.diff(edges) <= 0) or not np.isclose(shares.sum(), 1.0):
            raise ValueError(f"not a reference histogram: {len(edges)} edges, {len(shares)} shares "
                             f"summing to {shares.sum():g}")
        return cls(edges, shares)


def reference_histogram(values: np.ndarray, bins: int = REFERENCE_BINS) -> ReferenceHistogram:
    """Bins at the quantiles of the finite ``values`` (ties merged), with the share of ``values`` in each."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("no finite reference values")
    inner = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1], method="lower"))
    # a bin edge at the maximum would leave the last bin empty by construction
    inner = inner[inner < values.max()]
    provisional = ReferenceHistogram(inner, np.full(inner.size + 1, 1.0 / (inner.size + 1)))
    counts = provisional.counts(values)
    return ReferenceHistogram(inner, counts / counts.sum())


def psi(reference_shares: np.ndarray, live_counts: np.ndarray, floor: float = SHARE_FLOOR) -> float:
    """Population stability index of ``live_counts`` (per bin) against ``reference_shares``; nan when empty."""
    total = live_counts.sum()
    if total <= 0:
        return float("nan")
    live = np.maximum(live_counts / total, floor)
    expected = np.maximum(reference_shares, floor)
    return float(np.sum((live - expected) * np.log(live / expected)))


def reference_histograms(signals: Mapping[str, np.ndarray], bins: int = REFERENCE_BINS) -> dict[str, Any]:
    """The drift reference of a model, as stored in its bundle: ``{"format", "signals": {name: histogram}}``.

    Signals without a finite value are left out.
    """
    out: dict[str, Any] = {}
    for name, values in signals.items():
        if np.isfinite(np.asarray(values, dtype=np.float64)).any():
            out[name] = reference_histogram(values, bins).to_dict()
    return {"format": FORMAT, "bins": bins, "signals": out}


def watched_signals(light: np.ndarray, anomaly: np.ndarray, X: np.ndarray,
                     feature_names: list[str]) -> dict[str, np.ndarray]:
    """The watched signals of scored rows: light and anomaly scores and the :data:`DRIFT_FEATURES` columns."""
    signals = {LIGHT_SCORE: light, ANOMALY_SCORE: anomaly}
    for name in DRIFT_FEATURES:
        if name in feature_names:
            signals[name] = X[:, feature_names.index(name)]
    return signals


def load_reference(data: Mapping[str, Any] | None) -> dict[str, ReferenceHistogram]:
    """Signal name -> histogram from a stored reference (None or an unknown format: no signals)."""
    if not data or data.get("format") != FORMAT:
        return {}
    return {name: ReferenceHistogram.from_dict(h) for name, h in data.get("signals", {}).items()}


def reference_of_manifest(manifest: Mapping[str, Any]) -> dict[str, ReferenceHistogram]:
    """The drift reference a model bundle's manifest holds (``metrics.drift_reference``; none: no signals)."""
    return load_reference((manifest.get("metrics") or {}).get("drift_reference"))


class DriftWindow:
    """Per-bin counts of every watched signal over the most recent events, and their PSI.

    Parameters
    ----------
    reference : signal name -> reference histogram (one model version).
    window_events : events kept; the oldest micro-batches are dropped once the newer ones hold this many.
    min_events : fewest events before :meth:`psi` reports a value (nan before).
    """

    def __init__(self, reference: Mapping[str, ReferenceHistogram], window_events: int = DEFAULT_WINDOW_EVENTS,
                 min_events: int = MIN_WINDOW_EVENTS) -> None:
        self.reference = dict(reference)
        self.window_events = window_events
        self.min_events = min_events
        self._batches: deque[tuple[int, dict[str, np.ndarray]]] = deque()
        self._totals = {name: np.zeros(h.edges.size + 1, dtype=np.int64) for name, h in self.reference.items()}
        self._events = 0

    @property
    def events(self) -> int:
        """Events in the window."""
        return self._events

    def add(self, signals: Mapping[str, np.ndarray]) -> None:
        """Count one micro-batch (signal name -> values of its events); unknown signals are ignored."""
        counts = {name: h.counts(signals[name]) for name, h in self.reference.items() if name in signals}
        if not counts:
            return
        size = max(int(c.sum()) for c in counts.values())
        for name, c in counts.items():
            self._totals[name] += c
        self._batches.append((size, counts))
        self._events += size
        while self._batches and self._events - self._batches[0][0] >= self.window_events:
            old_size, old = self._batches.popleft()
            self._events -= old_size
            for name, c in old.items():
                self._totals[name] -= c

    def psi(self) -> dict[str, float]:
        """Signal name -> PSI of the window against the reference (nan while the window is too small)."""
        return {name: (psi(h.shares, self._totals[name]) if self._totals[name].sum() >= self.min_events
                       else float("nan"))
                for name, h in self.reference.items()}
