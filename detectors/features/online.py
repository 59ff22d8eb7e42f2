"""Incremental execution of the feature definition for the stream: the per-event update of per-entity state.

:class:`IncrementalFeatures` computes each event's features from the state of its customer
(:class:`CustomerHistory`) and terminal (:class:`TerminalHistory`), both defined with their binary layout in
:mod:`fraudstream.detectors.features.state` and re-exported here, then adds the event to that state.  The values
equal those of ``batch.compute_features`` for the same events and labels (see ``definition.FEATURE_DOCS``).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, MutableMapping, Sequence
from typing import TypeVar

import numpy as np

from fraudstream.detectors.features.calendar import night_flags, weekend_flags
from fraudstream.detectors.features.definition import (
    AMOUNT_RATIO_MIN_MEAN,
    DAY_S,
    DEFAULT_CONFIG,
    OWN_FEATURES,
    FeatureConfig,
)
from fraudstream.detectors.features.state import (
    CustomerHistory,
    TerminalHistory,
    key_position,
)
from fraudstream.detectors.schema import LabelEvent, TransactionBatch

#: Window of CUSTOMER_NB_TERMINALS_1DAY_WINDOW (s).
DISTINCT_TERMINALS_WINDOW_S = DAY_S
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

    Events of one customer must arrive in (timestamp, transaction id) order.  An event that arrives late anyway
    gets its features from the transactions before it and is inserted at its place; features already returned
    for later events are not revised.  A transaction whose id is already in its customer's history (a
    redelivery) is not added again: its features are computed from the transactions before it, the stored copy
    excluded, which gives the values it got the first time as long as no late event came in between.

    Parameters
    ----------
    config : windows and thresholds; must be the configuration the model was trained with.
    """

    def __init__(self, config: FeatureConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self.feature_names = config.feature_names()
        self._customer_windows_s = [days * DAY_S for days in config.customer_windows_days]
        self._terminal_windows_s = [days * DAY_S for days in config.terminal_windows_days]
        self._history_s = config.history_days * DAY_S
        self._recent_s = config.recent_days * DAY_S
        self._episode_window_s = max(config.terminal_windows_days) * DAY_S
        self._label_delay_s = config.label_delay_s
        self._customer_retention_s = config.customer_retention_s + STATE_TRIM_SLACK_S
        self._terminal_retention_s = config.terminal_retention_s + STATE_TRIM_SLACK_S
        # Look-back lengths (s) of the customer's windows, longest first; features sharing a length share one
        # search per event, and each search starts where the longer window's ended.
        lookbacks_s = sorted({*self._customer_windows_s, self._history_s, config.burst_window_s,
                              DISTINCT_TERMINALS_WINDOW_S}, reverse=True)
        self._customer_lookbacks_s = lookbacks_s
        self._customer_window_slots = [lookbacks_s.index(window_s) for window_s in self._customer_windows_s]
        self._history_slot = lookbacks_s.index(self._history_s)
        self._burst_slot = lookbacks_s.index(config.burst_window_s)
        self._day_slot = lookbacks_s.index(DISTINCT_TERMINALS_WINDOW_S)
        # rows from column 3 on: customer windows, terminal windows (filled in second), own features
        self._terminal_offset = 2 * len(config.customer_windows_days)
        self._terminal_placeholders = [None] * (2 * len(config.terminal_windows_days))
        layout = ["TX_AMOUNT", "TX_DURING_WEEKEND", "TX_DURING_NIGHT"]
        for days in config.customer_windows_days:
            layout += [f"CUSTOMER_ID_NB_TX_{days}DAY_WINDOW", f"CUSTOMER_ID_AVG_AMOUNT_{days}DAY_WINDOW"]
        for days in config.terminal_windows_days:
            layout += [f"TERMINAL_ID_NB_TX_{days}DAY_WINDOW", f"TERMINAL_ID_RISK_{days}DAY_WINDOW"]
        layout += OWN_FEATURES
        if layout != self.feature_names:
            raise ValueError(f"feature layout {layout} differs from the definition {self.feature_names}")

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def transform(self, batch: TransactionBatch, customers: MutableMapping[int, CustomerHistory],
                  terminals: MutableMapping[int, TerminalHistory]) -> np.ndarray:
        """Features of every event of ``batch`` (rows in batch order), updating the state event by event.

        Each event's features use the state as it is before the event (plus the event itself where the
        definition includes it); then the event is added to its customer's and terminal's history.  Entities
        missing from the mappings are new: their state is created and stored in the mapping.

        Returns
        -------
        float64 array of shape ``(len(batch), n_features)``.
        """
        n = len(batch)
        _check_batch(batch)
        out = np.empty((n, self.n_features), dtype=np.float64)
        if n == 0:
            return out
        out[:, 0] = batch.amount
        out[:, 1] = weekend_flags(batch.timestamp)
        out[:, 2] = night_flags(batch.timestamp, self.config.night_end_hour)
        rows = []
        customer_features, terminal_features = self._customer_features, self._terminal_features
        customer_retention_s, terminal_retention_s = self._customer_retention_s, self._terminal_retention_s
        for timestamp, transaction_id, customer_id, terminal_id, amount in zip(
                batch.timestamp.tolist(), batch.transaction_id.tolist(), batch.customer_id.tolist(),
                batch.terminal_id.tolist(), batch.amount.tolist()):
            customer = customers.get(customer_id)
            if customer is None:
                customer = customers[customer_id] = CustomerHistory()
            terminal = terminals.get(terminal_id)
            if terminal is None:
                terminal = terminals[terminal_id] = TerminalHistory()
            position = key_position(customer.timestamps, customer.transaction_ids, timestamp, transaction_id)
            row = customer_features(customer, position, timestamp, amount, terminal_id)
            terminal_features(terminal, timestamp, transaction_id, row)
            rows.append(row)
            if not customer.has_transaction(transaction_id):
                customer.insert(position, timestamp, transaction_id, amount, terminal_id)
                customer.trim(customer.timestamps[-1] - customer_retention_s)
                terminal.insert(timestamp, transaction_id)
                terminal.trim(terminal.timestamps[-1] - terminal_retention_s)
        out[:, 3:] = rows
        return out

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

    def _customer_features(self, customer: CustomerHistory, position: int, timestamp: float, amount: float,
                           terminal_id: int) -> list[float | None]:
        """The event's feature row from column 3 on, with the customer's features filled in and placeholders
        (``None``) for the terminal windows, from the ``position`` transactions before the event."""
        timestamps, amounts, terminal_ids = customer.timestamps, customer.amounts, customer.terminal_ids
        starts = []  # index of the first transaction after t - lookback, per look-back length
        start = 0
        for lookback_s in self._customer_lookbacks_s:
            start = bisect_right(timestamps, timestamp - lookback_s, start, position)
            starts.append(start)
        row: list[float | None] = []
        # start -> sum of amounts[start:position], reused when another window starts there
        window_sums: dict[int, float] = {}
        for slot in self._customer_window_slots:
            start = starts[slot]
            count = position - start + 1
            window_sum = window_sums.get(start)
            if window_sum is None:
                window_sum = window_sums[start] = sum(amounts[start:position])
            row.append(count)
            row.append((window_sum + amount) / count)
        row += self._terminal_placeholders

        history_s = self._history_s
        history_start = start = starts[self._history_slot]
        stop = bisect_left(timestamps, timestamp, start, position)  # strictly earlier times only
        if stop > start:
            earlier_sum = window_sums.get(start) if stop == position else None
            if earlier_sum is None:
                earlier_sum = sum(amounts[start:stop])
            ratio = amount / max(earlier_sum / (stop - start), AMOUNT_RATIO_MIN_MEAN)
            is_new = 0.0 if customer.used_terminal(terminal_id, start, stop) else 1.0
        else:
            ratio, is_new = 1.0, 1.0
        if position and timestamps[position - 1] > timestamp - history_s:
            since_last = timestamp - timestamps[position - 1]
        else:
            since_last = history_s
        burst = position - starts[self._burst_slot] + 1
        day_start = starts[self._day_slot]
        distinct = set(terminal_ids[day_start:position])
        distinct.add(terminal_id)
        row += (ratio, is_new, since_last, burst, len(distinct),
                self._baseline_ratio(customer, history_start, position, timestamp, amount))
        return row

    def _baseline_ratio(self, customer: CustomerHistory, start: int, position: int, timestamp: float,
                        amount: float) -> float:
        """Amount / mean amount in ``(t - history, t - recent]`` (this event included only when recent is 0);
        ``start`` is the index of the first transaction after ``t - history``."""
        timestamps, amounts = customer.timestamps, customer.amounts
        window_end = timestamp - self._recent_s
        stop = bisect_right(timestamps, window_end, start, position)
        total, count = sum(amounts[start:stop]), stop - start
        if window_end >= timestamp:  # recent is 0: the window ends at this event
            total, count = total + amount, count + 1
        return amount / max(total / count, AMOUNT_RATIO_MIN_MEAN) if count else 1.0

    def _terminal_features(self, terminal: TerminalHistory, timestamp: float, transaction_id: int,
                           row: list) -> None:
        """Terminal count and risk per window into ``row``'s placeholders, then the fraud episode age (s) at its
        end.

        Windows hold the transactions in ``(t - d - w, t - d]`` and the fraud labels known at ``t``.
        """
        window_end = timestamp - self._label_delay_s
        includes_self = window_end >= timestamp  # only when the label delay is 0
        timestamps, transaction_ids = terminal.timestamps, terminal.transaction_ids
        fraud_timestamps, fraud_ids, known_at = (terminal.fraud_timestamps, terminal.fraud_transaction_ids,
                                                 terminal.fraud_known_at)
        stop = bisect_right(timestamps, window_end)
        fraud_stop = bisect_right(fraud_timestamps, window_end)
        if includes_self:  # ties at t: only transactions up to this one in (timestamp, id) order
            while stop and timestamps[stop - 1] == timestamp and transaction_ids[stop - 1] >= transaction_id:
                stop -= 1
            while fraud_stop and fraud_timestamps[fraud_stop - 1] == timestamp and \
                    fraud_ids[fraud_stop - 1] > transaction_id:
                fraud_stop -= 1
        all_known = terminal.max_known_at <= timestamp
        column = self._terminal_offset
        for window_s in self._terminal_windows_s:
            window_start = window_end - window_s
            count = stop - bisect_right(timestamps, window_start, 0, stop) + includes_self
            if not fraud_stop:  # no fraud label at or before the window end (most terminals)
                frauds = 0
            elif all_known:
                frauds = fraud_stop - bisect_right(fraud_timestamps, window_start, 0, fraud_stop)
            else:
                fraud_start = bisect_right(fraud_timestamps, window_start, 0, fraud_stop)
                frauds = sum(1 for k in range(fraud_start, fraud_stop) if known_at[k] <= timestamp)
            row[column] = count
            row[column + 1] = frauds / count if count else 0.0
            column += 2

        episode_age = self.config.terminal_retention_s
        if fraud_stop:
            fraud_start = bisect_right(fraud_timestamps, window_end - self._episode_window_s, 0, fraud_stop)
            for k in range(fraud_start, fraud_stop):  # earliest fraud of the window known at t
                if all_known or known_at[k] <= timestamp:
                    episode_age = timestamp - fraud_timestamps[k]
                    break
        row.append(episode_age)
