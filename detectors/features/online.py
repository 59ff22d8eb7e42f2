"""Incremental execution of the feature definition for the stream: the update of per-entity state by batches.

:class:`IncrementalFeatures` computes each event's features from the state of its customer
(:class:`CustomerHistory`) and terminal (:class:`TerminalHistory`), both defined with their binary layout in
:mod:`fraudstream.detectors.features.state` and re-exported here, then adds the event to that state.  The values
equal those of ``batch.compute_features`` for the same events and labels (see ``definition.FEATURE_DOCS``).  The
update of a micro-batch is vectorized over its events (:mod:`fraudstream.detectors.features.incremental`) on
columnar state (:mod:`fraudstream.detectors.features.columns`), which a store can decode and encode for all the
batch's entities at once.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from typing import Any, TypeVar

import numpy as np

from fraudstream.detectors.features.columns import CustomerColumns, TerminalColumns
from fraudstream.detectors.features.definition import (
    DAY_S,
    DEFAULT_CONFIG,
    NOVELTY_FEATURES,
    OWN_FEATURES,
    FeatureConfig,
)
from fraudstream.detectors.features.incremental import DISTINCT_TERMINALS_WINDOW_S, UpdateResult, Windows, update
from fraudstream.detectors.features.state import (  # the state classes are re-exported from here
    CustomerHistory,
    TerminalHistory,
)
from fraudstream.detectors.schema import LabelEvent, TransactionBatch

__all__ = ["CustomerHistory", "TerminalHistory", "IncrementalFeatures", "STATE_TRIM_SLACK_S",
           "DISTINCT_TERMINALS_WINDOW_S"]
#: State is kept this much (s) beyond the retention of the config behind the entity's newest transaction, so that
#: events arriving a little late (other partitions, other workers) or delivered again still see complete windows.
STATE_TRIM_SLACK_S = DAY_S

_History = TypeVar("_History", CustomerHistory, TerminalHistory)


def _get_or_create(states: MutableMapping[int, _History], key: int, factory: Callable[[], _History]) -> _History:
    state = states.get(key)
    if state is None:
        state = factory()
        states[key] = state
    return state


def _check_batch(batch: TransactionBatch) -> None:
    """Raise ``ValueError`` naming the field and transaction of the first value the features cannot use."""
    for field in ("transaction_id", "customer_id", "terminal_id", "amount"):
        if getattr(batch, field).shape != batch.timestamp.shape:
            raise ValueError(f"TransactionBatch.{field}: {getattr(batch, field).shape[0]} values for "
                             f"{batch.timestamp.shape[0]} timestamps")
    for field in ("timestamp", "amount"):
        bad = ~np.isfinite(getattr(batch, field))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"TransactionBatch.{field}: not a finite number at row {row} "
                             f"(transaction {batch.transaction_id[row]})")


class IncrementalFeatures:
    """Computes the feature rows of a stream of micro-batches from per-customer and per-terminal state.

    Events of one customer must arrive in (timestamp, transaction id) order (within a batch they are taken in
    that order).  An event that arrives late anyway gets its features from the transactions before it and is
    inserted at its place; features already returned for later events are not revised.  A transaction already in
    its customer's history with the same timestamp and id (a redelivery), or earlier in the batch with the same
    id, is not added again: its features are computed from the transactions before it, the stored copy excluded,
    which gives the values it got the first time as long as no late event came in between.

    Parameters
    ----------
    config : windows and thresholds; must be the configuration the model was trained with.
    """

    def __init__(self, config: FeatureConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self.feature_names = config.feature_names()
        self._terminal_retention_s = config.terminal_retention_s + STATE_TRIM_SLACK_S
        self._windows = Windows(config, config.customer_retention_s + STATE_TRIM_SLACK_S,
                                self._terminal_retention_s)
        layout = ["TX_AMOUNT", "TX_DURING_WEEKEND", "TX_DURING_NIGHT"]
        for days in config.customer_windows_days:
            layout += [f"CUSTOMER_ID_NB_TX_{days}DAY_WINDOW", f"CUSTOMER_ID_AVG_AMOUNT_{days}DAY_WINDOW"]
        for days in config.terminal_windows_days:
            layout += [f"TERMINAL_ID_NB_TX_{days}DAY_WINDOW", f"TERMINAL_ID_RISK_{days}DAY_WINDOW"]
        layout += OWN_FEATURES
        layout += [f"TERMINAL_NB_FRAUDS_KNOWN_{days}DAY" for days in config.fresh_label_windows_days]
        layout += NOVELTY_FEATURES
        layout += config.sequence_feature_names()  # written from the first one's column on, in this order
        if layout != self.feature_names:
            raise ValueError(f"feature layout {layout} differs from the definition {self.feature_names}")

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def transform(self, batch: TransactionBatch, customers: MutableMapping[int, CustomerHistory],
                  terminals: MutableMapping[int, TerminalHistory]) -> np.ndarray:
        """Features of every event of ``batch`` (rows in batch order), updating the state.

        The events are taken in (timestamp, transaction id) order: each one's features use the state as it is
        before it (plus the event itself where the definition includes it), then it is added to its customer's
        and terminal's history.  Entities missing from the mappings are new: their state is created and stored
        in the mapping.  The work is vectorized over the batch (:func:`.incremental.update`).

        Returns
        -------
        float64 array of shape ``(len(batch), n_features)``.
        """
        _check_batch(batch)
        if len(batch) == 0:
            return np.empty((0, self.n_features), dtype=np.float64)
        customer_ids = np.unique(batch.account).tolist()
        terminal_ids = np.unique(batch.terminal_id).tolist()
        result = self.transform_columns(
            batch, CustomerColumns.from_histories(customer_ids, [customers.get(c) for c in customer_ids]),
            TerminalColumns.from_histories(terminal_ids, [terminals.get(t) for t in terminal_ids]))
        _write_back(result.customers, result.changed_customers, customers)
        _write_back(result.terminals, result.changed_terminals, terminals)
        return result.features

    def transform_columns(self, batch: TransactionBatch, customers: CustomerColumns,
                          terminals: TerminalColumns) -> UpdateResult:
        """:meth:`transform` on columnar state (e.g. decoded at once from a store with ``from_bytes_list``).

        ``customers`` and ``terminals`` hold any entities (those of the batch that have state, and others); the
        result holds them all, plus new ones for the batch's entities without state, sorted by id.
        """
        _check_batch(batch)
        return update(batch, customers, terminals, self._windows)

    def learn_labels(self, labels: Sequence[LabelEvent], terminals: MutableMapping[int, TerminalHistory]) -> None:
        """Record labels in their terminals' histories (a later label of a transaction replaces the earlier).

        A label counts in terminal risk for transactions at or after its ``known_at`` whose window holds the
        labelled transaction's time.  Labels of transactions older than the terminal's retention are dropped,
        since no window can reach them.
        """
        for label in labels:
            terminal = _get_or_create(terminals, label.terminal_id, TerminalHistory)
            terminal.set_label(label.transaction_id, label.tx_timestamp, label.fraud, label.known_at)
            if terminal.timestamps:
                terminal.trim(terminal.timestamps[-1] - self._terminal_retention_s)


def _write_back(columns: CustomerColumns | TerminalColumns, changed: np.ndarray,
                states: MutableMapping[int, Any]) -> None:
    """Store the changed entities, and those the mapping lacks, as history objects."""
    ids = columns.ids.tolist()
    for k in changed.tolist():
        states[ids[k]] = columns.history(k)
    for k, key in enumerate(ids):
        if key not in states:
            states[key] = columns.history(k)
