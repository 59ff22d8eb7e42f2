"""The incremental feature update of one micro-batch, vectorized over all its events.

:func:`update` takes a batch and the columnar state of its customers and terminals
(:mod:`~fraudstream.detectors.features.columns`) and returns the feature rows and the new state.  It gives the
values of processing the events one at a time in (timestamp, transaction id) order, each seeing the state as it
was before it (plus itself where the definition includes it), then adding it to its customer's and terminal's
history -- without a Python loop over events or entities:

1. the batch's new events are merged into the histories (sorted concatenated columns, one block per entity);
2. every window bound is one vectorized binary search per look-back length inside each event's block
   (:func:`bisect`), exact on (timestamp, id) ties;
3. window sums, terminal novelty and distinct terminals are reductions over the window's rows (each sum from
   the window's own values, so it does not depend on what else the state holds);
4. fraud labels, rare, are looked at only for the events whose terminal has some.

An event already in its customer's history (same timestamp and id: a redelivery) or earlier in the batch (same
id) is not added again; its features are those of its place in the history, computed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from fraudstream.detectors.features.calendar import night_flags, weekend_flags
from fraudstream.detectors.features.columns import CustomerColumns, TerminalColumns
from fraudstream.detectors.features.definition import AMOUNT_RATIO_MIN_MEAN, DAY_S, FeatureConfig
from fraudstream.detectors.features.novelty import card_novelty
from fraudstream.detectors.features.sequence import card_sequence
from fraudstream.detectors.schema import TransactionBatch

#: Window of CUSTOMER_NB_TERMINALS_1DAY_WINDOW (s).
DISTINCT_TERMINALS_WINDOW_S = DAY_S


@njit(cache=True, nogil=True)
def _right(values, lo, hi, x):  # pragma: no cover - compiled
    """First index in [lo, hi) with values > x (hi when none); values sorted there."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if values[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _left(values, lo, hi, x):  # pragma: no cover - compiled
    """First index in [lo, hi) with values >= x."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _before(values, ids, lo, hi, x, x_id):  # pragma: no cover - compiled
    """Rows of [lo, hi) before the key (x, x_id) in (value, id) order."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if values[mid] < x or (values[mid] == x and ids[mid] < x_id):
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _bisect_many(values, lo, hi, x):  # pragma: no cover - compiled
    out = np.empty(lo.shape[0], dtype=np.int64)
    for k in range(lo.shape[0]):
        out[k] = _right(values, lo[k], hi[k], x[k])
    return out


@njit(cache=True, nogil=True)
def _before_many(values, ids, lo, hi, x, x_ids):  # pragma: no cover - compiled
    out = np.empty(lo.shape[0], dtype=np.int64)
    for k in range(lo.shape[0]):
        out[k] = _before(values, ids, lo[k], hi[k], x[k], x_ids[k])
    return out


def bisect(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, x: np.ndarray, ids: np.ndarray | None = None,
           x_ids: np.ndarray | None = None) -> np.ndarray:
    """Per query k: first index in ``[lo[k], hi[k])`` with ``values > x[k]``; with ``ids``, the number of rows
    before the key ``(x[k], x_ids[k])`` in (value, id) order (each block sorted so)."""
    lo, hi = np.ascontiguousarray(lo, dtype=np.int64), np.ascontiguousarray(hi, dtype=np.int64)
    if ids is None:
        return _bisect_many(values, lo, hi, np.ascontiguousarray(x, dtype=np.float64))
    return _before_many(values, ids, lo, hi, np.ascontiguousarray(x, dtype=np.float64),
                        np.ascontiguousarray(x_ids, dtype=np.int64))


@njit(cache=True, nogil=True)
def _customer_kernel(m_t, m_id, m_amount, m_terminal, lo, hi, t, tx_id, amount, terminal, lookbacks, window_slots,
                     history_slot, burst_slot, day_slot, history_s, recent_s, min_mean, out, first_column,
                     own_column, novelty_column, sequence_length, sequence_column):  # pragma: no cover - compiled
    """Customer windows (from ``first_column``), the customer's own features (from ``own_column``), its
    novelty against its history (from ``novelty_column``) and its recent sequence (from ``sequence_column``, when
    ``sequence_length`` > 0)."""
    starts = np.empty(lookbacks.shape[0], dtype=np.int64)
    for i in range(t.shape[0]):
        lo_i, ti, amount_i, terminal_i = lo[i], t[i], amount[i], terminal[i]
        position = _before(m_t, m_id, lo_i, hi[i], ti, tx_id[i])  # the event's own row is not before it
        start = lo_i
        for j in range(lookbacks.shape[0]):  # longest first: each search starts where the longer one ended
            start = _right(m_t, start, position, ti - lookbacks[j])
            starts[j] = start
        column = first_column
        for j in range(window_slots.shape[0]):
            first = starts[window_slots[j]]
            count = position - first + 1
            total = 0.0
            for k in range(first, position):
                total += m_amount[k]
            out[i, column] = count
            out[i, column + 1] = (total + amount_i) / count
            column += 2
        history_start = starts[history_slot]
        stop = _left(m_t, history_start, position, ti)  # strictly earlier times only
        ratio, is_new = 1.0, 1.0
        if stop > history_start:
            total = 0.0
            for k in range(history_start, stop):
                total += m_amount[k]
            ratio = amount_i / max(total / (stop - history_start), min_mean)
            for k in range(history_start, stop):
                if m_terminal[k] == terminal_i:
                    is_new = 0.0
                    break
        card_novelty(m_t, m_amount, history_start, stop, ti, amount_i, out, i, novelty_column)
        if sequence_length > 0:
            card_sequence(m_t, m_amount, m_terminal, history_start, stop, ti, terminal_i, history_s, sequence_length,
                          out, i, sequence_column)
        since_last = history_s
        if position > lo_i and m_t[position - 1] > ti - history_s:
            since_last = ti - m_t[position - 1]
        day_start = starts[day_slot]
        distinct = 1  # the event's own terminal
        for k in range(day_start, position):
            value = m_terminal[k]
            if value == terminal_i:
                continue
            seen = False
            for q in range(day_start, k):
                if m_terminal[q] == value:
                    seen = True
                    break
            if not seen:
                distinct += 1
        window_end = ti - recent_s
        stop = _right(m_t, history_start, position, window_end)
        total = 0.0
        for k in range(history_start, stop):
            total += m_amount[k]
        count = stop - history_start
        if window_end >= ti:  # recent is 0: the window ends at this event
            total += amount_i
            count += 1
        baseline = amount_i / max(total / count, min_mean) if count else 1.0
        out[i, own_column] = ratio
        out[i, own_column + 1] = is_new
        out[i, own_column + 2] = since_last
        out[i, own_column + 3] = position - starts[burst_slot] + 1
        out[i, own_column + 4] = distinct
        out[i, own_column + 5] = baseline


@njit(cache=True, nogil=True)
def _terminal_kernel(m_t, m_id, lo, hi, f_t, f_id, f_known, f_lo, f_hi, t, tx_id, delay_s, windows_s,
                     episode_window_s, no_episode_s, fresh_windows_s, retention_s, burst_s, burst_lag_s, out,
                     first_column,
                     age_column, fresh_column, burst_column):  # pragma: no cover - compiled
    """Terminal count and risk per window (from ``first_column``), the fraud episode age (s) and the frauds known
    within each fresh-label window (from ``fresh_column``)."""
    for i in range(t.shape[0]):
        ti, id_i, lo_i, f_lo_i = t[i], tx_id[i], lo[i], f_lo[i]
        window_end = ti - delay_s
        with_self = window_end >= ti  # only when the label delay is 0
        stop = _right(m_t, lo_i, hi[i], window_end)
        fraud_stop = _right(f_t, f_lo_i, f_hi[i], window_end)
        if with_self:  # ties at t: only transactions up to this one in (timestamp, id) order
            while stop > lo_i and m_t[stop - 1] == ti and m_id[stop - 1] >= id_i:
                stop -= 1
            while fraud_stop > f_lo_i and f_t[fraud_stop - 1] == ti and f_id[fraud_stop - 1] > id_i:
                fraud_stop -= 1
        column = first_column
        for j in range(windows_s.shape[0]):
            window_start = window_end - windows_s[j]
            count = stop - _right(m_t, lo_i, stop, window_start) + (1 if with_self else 0)
            frauds = 0
            if fraud_stop > f_lo_i:
                for k in range(_right(f_t, f_lo_i, fraud_stop, window_start), fraud_stop):
                    if f_known[k] <= ti:
                        frauds += 1
            out[i, column] = count
            out[i, column + 1] = frauds / count if count else 0.0
            column += 2
        age = no_episode_s
        if fraud_stop > f_lo_i:
            for k in range(_right(f_t, f_lo_i, fraud_stop, window_end - episode_window_s), fraud_stop):
                if f_known[k] <= ti:  # earliest fraud of the window known at t
                    age = ti - f_t[k]
                    break
        out[i, age_column] = age
        fresh_lo = _right(f_t, f_lo_i, f_hi[i], ti - retention_s)
        fresh_hi = _right(f_t, fresh_lo, f_hi[i], ti)
        for j in range(fresh_windows_s.shape[0]):
            window_start = ti - fresh_windows_s[j]
            frauds = 0
            for k in range(fresh_lo, fresh_hi):  # labels are few: a scan of the terminal's known frauds
                if window_start < f_known[k] <= ti:
                    frauds += 1
            out[i, fresh_column + j] = frauds
        position = _before(m_t, m_id, lo_i, hi[i], ti, id_i)  # the event's own row is not before it
        if burst_lag_s > 0:  # (t - lag - w, t - lag): other cards' transactions settled across partitions
            settled = _left(m_t, lo_i, position, ti - burst_lag_s)
            out[i, burst_column] = settled - _right(m_t, lo_i, settled, ti - burst_lag_s - burst_s)
        else:
            out[i, burst_column] = position - _right(m_t, lo_i, position, ti - burst_s) + 1


def _groups(ids: np.ndarray, state_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entities of the state plus those of ``ids`` it lacks (sorted by id) and each id's entity position.

    Returns (order of the state's entities by id, ids missing from the state, position of each of ``ids`` in
    the merged sorted entity list).
    """
    by_id = np.argsort(state_ids, kind="stable")
    known = state_ids[by_id]
    wanted = np.unique(ids)
    at = np.searchsorted(known, wanted)
    found = (at < known.shape[0]) & (known[np.minimum(at, max(known.shape[0] - 1, 0))] == wanted) \
        if known.shape[0] else np.zeros(wanted.shape[0], dtype=bool)
    missing = wanted[~found]
    merged = np.concatenate([known, missing])
    order = np.argsort(merged, kind="stable")
    merged = merged[order]
    return np.concatenate([by_id, -1 - np.arange(missing.shape[0])])[order], missing, np.searchsorted(merged, ids)


@njit(cache=True, nogil=True)
def _merge_column(old, new, insert_at, out):  # pragma: no cover - compiled
    """``old`` with ``new[j]`` inserted before old row ``insert_at[j]`` (non-decreasing), into ``out``."""
    i = 0
    for j in range(new.shape[0]):
        while i < insert_at[j]:
            out[i + j] = old[i]
            i += 1
        out[i + j] = new[j]
    for k in range(i, old.shape[0]):
        out[k + new.shape[0]] = old[k]


def _merge(starts: np.ndarray, columns: list[np.ndarray], group: np.ndarray, insert_at: np.ndarray,
           new_columns: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Insert new rows (sorted by (group, key), ``insert_at`` = rows before them in the old columns)."""
    insert_at = np.ascontiguousarray(insert_at, dtype=np.int64)
    merged = []
    for old, new in zip(columns, new_columns):
        out = np.empty(old.shape[0] + new.shape[0], dtype=old.dtype)
        _merge_column(old, np.ascontiguousarray(new, dtype=old.dtype), insert_at, out)
        merged.append(out)
    added = np.bincount(group, minlength=starts.shape[0] - 1)
    new_starts = starts.copy()
    new_starts[1:] += np.cumsum(added)
    return new_starts, merged


@njit(cache=True, nogil=True)
def _trim_mask(starts, timestamp, cutoff, trimmed):  # pragma: no cover - compiled
    keep = np.ones(timestamp.shape[0], dtype=np.bool_)
    for k in range(starts.shape[0] - 1):
        if trimmed[k]:
            i = starts[k]
            while i < starts[k + 1] and timestamp[i] <= cutoff[k]:
                keep[i] = False
                i += 1
    return keep


def _trim(starts: np.ndarray, timestamp: np.ndarray, cutoff: np.ndarray, trimmed: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows kept: in entities flagged ``trimmed``, rows at or before the entity's cutoff go."""
    return _trim_mask(starts, timestamp, np.ascontiguousarray(cutoff, dtype=np.float64), trimmed)


def _kept_starts(starts: np.ndarray, keep: np.ndarray) -> np.ndarray:
    kept = np.zeros(keep.shape[0] + 1, dtype=np.int64)
    np.cumsum(keep, out=kept[1:])
    return kept[starts]


@dataclass
class UpdateResult:
    """Feature rows (batch order) and the new state of the batch's entities (and any others given)."""

    features: np.ndarray
    customers: CustomerColumns
    terminals: TerminalColumns
    #: positions (in ``customers``) of the entities the batch changed; same for terminals.
    changed_customers: np.ndarray
    changed_terminals: np.ndarray


class Windows:
    """Window lengths (s) and layout of one feature configuration."""

    def __init__(self, config: FeatureConfig, customer_retention_s: float, terminal_retention_s: float) -> None:
        self.config = config
        self.customer_windows_s = [days * DAY_S for days in config.customer_windows_days]
        self.terminal_windows_s = [days * DAY_S for days in config.terminal_windows_days]
        self.history_s = config.history_days * DAY_S
        self.recent_s = config.recent_days * DAY_S
        self.episode_window_s = max(config.terminal_windows_days) * DAY_S
        self.label_delay_s = config.label_delay_s
        self.customer_retention_s = customer_retention_s
        self.terminal_retention_s = terminal_retention_s
        lookbacks_s = sorted({*self.customer_windows_s, self.history_s, config.burst_window_s,
                              DISTINCT_TERMINALS_WINDOW_S}, reverse=True)
        # Look-back lengths (s), longest first; features sharing a length share one search per event
        self.lookbacks = np.asarray(lookbacks_s, dtype=np.float64)
        self.window_slots = np.asarray([lookbacks_s.index(x) for x in self.customer_windows_s], dtype=np.int64)
        self.history_slot = lookbacks_s.index(self.history_s)
        self.burst_slot = lookbacks_s.index(config.burst_window_s)
        self.day_slot = lookbacks_s.index(DISTINCT_TERMINALS_WINDOW_S)
        self.terminal_windows = np.asarray(self.terminal_windows_s, dtype=np.float64)
        self.fresh_label_windows = np.asarray([days * DAY_S for days in config.fresh_label_windows_days],
                                              dtype=np.float64)
        names = config.feature_names()
        #: Column of each feature in the output rows.
        self.column = {name: k for k, name in enumerate(names)}
        self.n_features = len(names)
        sequence_names = config.sequence_feature_names()
        #: Column of the first sequence feature (unused when the configuration has none).
        self.sequence_column = self.column[sequence_names[0]] if sequence_names else 0


def update(batch: TransactionBatch, customers: CustomerColumns, terminals: TerminalColumns, windows: Windows
           ) -> UpdateResult:
    """Features of every event of ``batch`` and the state after it (see the module docstring)."""
    n = len(batch)
    out = np.empty((n, windows.n_features), dtype=np.float64)
    t = batch.timestamp
    out[:, 0] = batch.amount
    out[:, 1] = weekend_flags(t)
    out[:, 2] = night_flags(t, windows.config.night_end_hour)
    customers, new, changed_customers = _customer_step(batch, customers, windows, out)
    terminals, changed_terminals = _terminal_step(batch, new, terminals, windows, out)
    return UpdateResult(out, customers, terminals, changed_customers, changed_terminals)


def _with_entities(state, ids: np.ndarray, empty_factory):
    """The state's entities plus empty ones for the ids it lacks, sorted by id; and each id's position."""
    state_ids = state.ids
    if state_ids.shape[0] < 2 or bool(np.all(state_ids[1:] > state_ids[:-1])):
        # already sorted: empty entities only add offsets, the rows stay where they are
        merged = np.union1d(state_ids, ids)
        if merged.shape[0] != state_ids.shape[0]:
            at = np.searchsorted(merged, state_ids)
            values = {name: getattr(state, name) for name in state.__dataclass_fields__}
            values["ids"] = merged
            for name in ("starts", "fraud_starts"):
                if name in values:
                    lengths = np.zeros(merged.shape[0], dtype=np.int64)
                    lengths[at] = np.diff(values[name])
                    values[name] = np.concatenate([[0], np.cumsum(lengths)])
            state = type(state)(**values)
        return state, np.searchsorted(merged, ids)
    order, missing, position = _groups(ids, state_ids)
    if missing.shape[0]:
        combined = _concat(state, empty_factory(missing))
        order = np.where(order >= 0, order, len(state) + (-1 - order))
        state = combined
    return state.take(order), position


def _concat(a, b):
    cls = type(a)
    fields = list(a.__dataclass_fields__)
    values = {}
    for name in fields:
        x, y = getattr(a, name), getattr(b, name)
        if name in ("starts", "fraud_starts"):
            values[name] = np.concatenate([x, y[1:] + x[-1]])
        else:
            values[name] = np.concatenate([x, y])
    return cls(**values)


def _customer_step(batch: TransactionBatch, customers: CustomerColumns, w: Windows, out: np.ndarray
                   ) -> tuple[CustomerColumns, np.ndarray, np.ndarray]:
    """Customer features into ``out`` (columns 3.. and the own features); returns the merged and trimmed state,
    the mask of events added to the histories (new), and the changed entity positions."""
    t, tx_id, amount, terminal = batch.timestamp, batch.transaction_id, batch.amount, batch.terminal_id
    state, g = _with_entities(customers, batch.account, CustomerColumns.empty)
    n = t.shape[0]
    starts = state.starts
    # events in processing order: by (customer, timestamp, id); an event is new unless already in its history
    # or an earlier event of the batch has its id
    order = np.lexsort((tx_id, t, g))
    lo, hi = starts[g], starts[g + 1]
    before = bisect(state.timestamp, lo, hi, t, ids=state.transaction_id, x_ids=tx_id)
    new = ~_at(state.timestamp, state.transaction_id, before, hi, t, tx_id)
    by_id = np.lexsort((np.argsort(np.lexsort((tx_id, t)), kind="stable"), tx_id, g))
    repeat = np.zeros(n, dtype=bool)
    repeat[by_id[1:]] = (g[by_id[1:]] == g[by_id[:-1]]) & (tx_id[by_id[1:]] == tx_id[by_id[:-1]])
    new &= ~repeat
    added = order[new[order]]
    starts, (m_t, m_id, m_amount, m_terminal) = _merge(
        starts, [state.timestamp, state.transaction_id, state.amount, state.terminal_id], g[added], before[added],
        [t[added], tx_id[added], amount[added], terminal[added]])
    first_column = 3
    own_column = w.column["CUSTOMER_AMOUNT_RATIO_HISTORY"]
    _customer_kernel(m_t, m_id, m_amount, m_terminal, starts[g], starts[g + 1], t, tx_id, amount, terminal,
                     w.lookbacks, w.window_slots, w.history_slot, w.burst_slot, w.day_slot, w.history_s, w.recent_s,
                     AMOUNT_RATIO_MIN_MEAN, out, first_column, own_column, w.column["CUSTOMER_AMOUNT_ZSCORE"],
                     w.config.sequence_length, w.sequence_column)

    changed = np.zeros(len(state), dtype=bool)
    changed[g[added]] = True
    newest = m_t[np.maximum(starts[1:] - 1, 0)] if m_t.shape[0] else np.zeros(len(state))
    keep = _trim(starts, m_t, newest - w.customer_retention_s, changed)
    result = CustomerColumns(state.ids, _kept_starts(starts, keep), m_t[keep], m_id[keep], m_amount[keep],
                             m_terminal[keep])
    return result, new, np.flatnonzero(changed)


def _at(timestamp: np.ndarray, transaction_id: np.ndarray, position: np.ndarray, stop: np.ndarray, t: np.ndarray,
        tx_id: np.ndarray) -> np.ndarray:
    """Whether row ``position`` (before ``stop``) holds the key (t, tx_id): the event is already stored."""
    if not timestamp.shape[0]:
        return np.zeros(position.shape[0], dtype=bool)
    row = np.minimum(position, timestamp.shape[0] - 1)
    return (position < stop) & (timestamp[row] == t) & (transaction_id[row] == tx_id)


def _terminal_step(batch: TransactionBatch, new: np.ndarray, terminals: TerminalColumns, w: Windows,
                   out: np.ndarray) -> tuple[TerminalColumns, np.ndarray]:
    """Terminal count, risk and fraud episode age into ``out``; returns the merged and trimmed state and the
    changed entity positions."""
    t, tx_id = batch.timestamp, batch.transaction_id
    state, g = _with_entities(terminals, batch.terminal_id, TerminalColumns.empty)
    starts = state.starts
    # the customer-new events join their terminal's history unless it already holds that (timestamp, id)
    candidates = np.flatnonzero(new)
    candidates = candidates[np.lexsort((tx_id[candidates], t[candidates], g[candidates]))]
    cg = g[candidates]
    insert_at = bisect(state.timestamp, starts[cg], starts[cg + 1], t[candidates], ids=state.transaction_id,
                       x_ids=tx_id[candidates])
    there = _at(state.timestamp, state.transaction_id, insert_at, starts[cg + 1], t[candidates], tx_id[candidates])
    twice = np.zeros(candidates.shape[0], dtype=bool)
    twice[1:] = (cg[1:] == cg[:-1]) & (t[candidates][1:] == t[candidates][:-1]) & \
        (tx_id[candidates][1:] == tx_id[candidates][:-1])
    added = candidates[~there & ~twice]
    starts, (m_t, m_id) = _merge(starts, [state.timestamp, state.transaction_id], g[added], insert_at[~there & ~twice],
                                 [t[added], tx_id[added]])
    f_t, f_id, f_known = state.fraud_timestamp, state.fraud_transaction_id, state.fraud_known_at
    first_column = w.column[f"TERMINAL_ID_NB_TX_{w.config.terminal_windows_days[0]}DAY_WINDOW"]
    fresh_column = (w.column[f"TERMINAL_NB_FRAUDS_KNOWN_{w.config.fresh_label_windows_days[0]}DAY"]
                    if w.config.fresh_label_windows_days else 0)
    _terminal_kernel(m_t, m_id, starts[g], starts[g + 1], f_t, f_id, f_known, state.fraud_starts[g],
                     state.fraud_starts[g + 1], t, tx_id, w.label_delay_s, w.terminal_windows, w.episode_window_s,
                     w.config.terminal_retention_s, w.fresh_label_windows, w.config.terminal_retention_s,
                     w.config.burst_window_s, w.config.terminal_burst_lag_s, out, first_column,
                     w.column["TERMINAL_FRAUD_EPISODE_AGE"],
                     fresh_column, w.column["TERMINAL_NB_TX_BURST_WINDOW"])

    changed = np.zeros(len(state), dtype=bool)
    changed[g[new]] = True
    newest = m_t[np.maximum(starts[1:] - 1, 0)] if m_t.shape[0] else np.zeros(len(state))
    cutoff = newest - w.terminal_retention_s
    keep = _trim(starts, m_t, cutoff, changed)
    keep_labels = _trim(state.fraud_starts, f_t, cutoff, changed & (starts[1:] > starts[:-1]))
    result = TerminalColumns(state.ids, _kept_starts(starts, keep), m_t[keep], m_id[keep],
                             _kept_starts(state.fraud_starts, keep_labels), f_t[keep_labels], f_id[keep_labels],
                             f_known[keep_labels])
    return result, np.flatnonzero(changed)
