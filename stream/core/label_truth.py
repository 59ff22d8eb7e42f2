"""Truth from labels: each new label joined to the stored decision of its transaction (by transaction id).

:func:`join_labels` (pure) takes a batch's new labels and the stored decision JSON of the transactions they name,
and returns arrays: the model version and decision of each labelled transaction, whether the label says fraud,
and the label delay (``known_at - tx_timestamp``, s) by label source.  :meth:`LabelTruth.counts` groups them by
(model version, decision, label) with one ``np.unique`` call, for the
``fraudstream_labelled_decisions_total`` counter; labels whose decision is not stored (expired, or decided by
no worker yet) count only in the delay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import orjson

from fraudstream.detectors.schema import LabelEvent

LABEL_FRAUD, LABEL_LEGIT = "fraud", "legit"
_SEPARATOR = "\x1f"


@dataclass(frozen=True)
class LabelTruth:
    """Labels of one batch: the joined ones (``model_version``, ``decision``, ``fraud``, same length) and the
    delay (s) and source of every one of them."""

    model_version: np.ndarray
    decision: np.ndarray
    fraud: np.ndarray
    delay_s: np.ndarray
    source: np.ndarray

    @classmethod
    def empty(cls) -> LabelTruth:
        nothing = np.array([], dtype=object)
        return cls(nothing, nothing, np.array([], dtype=bool), np.array([], dtype=np.float64), nothing)

    def counts(self) -> list[tuple[str, str, str, int]]:
        """(model version, decision, ``fraud`` | ``legit``, count) of the joined labels."""
        if self.decision.size == 0:
            return []
        label = np.where(self.fraud, LABEL_FRAUD, LABEL_LEGIT).astype(object)
        keys = self.model_version + _SEPARATOR + self.decision + _SEPARATOR + label
        unique, counts = np.unique(keys.astype(str), return_counts=True)
        return [(*key.split(_SEPARATOR), int(n)) for key, n in zip(unique.tolist(), counts.tolist())]

    def delays_by_source(self) -> dict[str, np.ndarray]:
        """Label delay (s) per label source."""
        if self.source.size == 0:
            return {}
        sources, inverse = np.unique(self.source.astype(str), return_inverse=True)
        return {name: self.delay_s[inverse == i] for i, name in enumerate(sources.tolist())}


def join_labels(labels: Sequence[LabelEvent], stored: Mapping[int, bytes]) -> LabelTruth:
    """The truth of ``labels`` given ``stored`` (transaction id -> decision JSON with ``decision`` and
    ``model_version``)."""
    if not labels:
        return LabelTruth.empty()
    delay = np.fromiter((lab.known_at - lab.tx_timestamp for lab in labels), dtype=np.float64, count=len(labels))
    source = np.array([lab.source for lab in labels], dtype=object)
    hits = [(lab.fraud, stored[lab.transaction_id]) for lab in labels if lab.transaction_id in stored]
    decoded = [orjson.loads(raw) for _, raw in hits]
    return LabelTruth(
        model_version=np.array([str(d.get("model_version", "")) for d in decoded], dtype=object),
        decision=np.array([str(d.get("decision", "")) for d in decoded], dtype=object),
        fraud=np.array([fraud for fraud, _ in hits], dtype=bool),
        delay_s=delay, source=source,
    )
