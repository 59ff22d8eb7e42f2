"""Batch execution of the feature definition: a whole labelled frame at once (training, evaluation, replay).

Every window is found with one global sort per entity and exact searches: timestamps are replaced by their rank
among the distinct timestamps, so ``(entity, time)`` fits one int64 key without losing precision, and
``np.searchsorted`` on that key gives each row's window start.  Window sums come from per-entity cumulative sums
(amounts) or exact integer cumulative sums (counts, frauds).  See ``definition.FEATURE_DOCS`` for the meaning of
every column; ``online.IncrementalFeatures`` computes the same values event by event.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from numba import njit

from fraudstream.detectors.features.calendar import night_flags, weekend_flags
from fraudstream.detectors.features.definition import AMOUNT_RATIO_MIN_MEAN, DAY_S, DEFAULT_CONFIG, FeatureConfig
from fraudstream.detectors.features.novelty import card_novelty_many
from fraudstream.detectors.features.sequence import card_sequence_many
from fraudstream.detectors.schema import (
    ACCOUNT_ID,
    CUSTOMER_ID,
    MAX_AMOUNT,
    REQUIRED_COLUMNS,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
    datetime_to_epoch_seconds,
)

#: Window of CUSTOMER_NB_TERMINALS_1DAY_WINDOW (s).
DISTINCT_TERMINALS_WINDOW_S = DAY_S
#: Optional input column: when each row's fraud label became known (datetime64, naive = UTC, or epoch seconds;
#: missing = never known).  Without it a label is known ``label_delay_days`` after its transaction.
LABEL_KNOWN_AT = "TX_FRAUD_KNOWN_AT"


class FeatureInputError(ValueError):
    """A frame that cannot be turned into features; names the column and the first offending row."""

    def __init__(self, reason: str, column: str | None = None, row: str | None = None) -> None:
        self.reason = reason
        self.column = column
        self.row = row
        where = ", ".join(part for part in (f"column {column}" if column else "", row or "") if part)
        super().__init__(f"{where}: {reason}" if where else reason)


class _InputColumns:
    """Validated input columns as numpy arrays (input row order)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
        if missing:
            raise FeatureInputError(f"missing required column(s) {missing}; got {list(frame.columns)}")
        self.timestamp = _timestamp_column(frame)
        self.transaction_id = _id_column(frame, TRANSACTION_ID)
        # the key of the customer histories: the account when the file names one (a card keeps its account's
        # history across a reissue), else the card, as the live path does (``TransactionBatch.account``)
        self.customer_id = _id_column(frame, ACCOUNT_ID if ACCOUNT_ID in frame.columns else CUSTOMER_ID)
        self.terminal_id = _id_column(frame, TERMINAL_ID)
        self.amount = _amount_column(frame)
        self.fraud = _fraud_column(frame)
        _check_unique_ids(frame, self.transaction_id)
        self.known_at = np.empty(0)  # set by :func:`compute_features` (it depends on the label delay)


def _row(frame: pd.DataFrame, position: int) -> str:
    return f"row {position} (index {frame.index[position]!r})"


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _timestamp_column(frame: pd.DataFrame) -> np.ndarray:
    values = frame[TX_DATETIME]
    if not pd.api.types.is_datetime64_any_dtype(values):
        converted = pd.to_datetime(values, errors="coerce", format="ISO8601")
        bad = converted.isna().to_numpy() & values.notna().to_numpy()
        if bad.any():
            row = _first(bad)
            raise FeatureInputError(f"not a date-time: {values.iloc[row]!r}", TX_DATETIME, _row(frame, row))
        values = converted
    null = values.isna().to_numpy()
    if null.any():
        raise FeatureInputError("missing date-time", TX_DATETIME, _row(frame, _first(null)))
    return datetime_to_epoch_seconds(values)


def _id_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = frame[column]
    null = values.isna().to_numpy()
    if null.any():
        raise FeatureInputError("missing id", column, _row(frame, _first(null)))
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise FeatureInputError(f"expected integer ids, got dtype {values.dtype}", column)
    raw = values.to_numpy()
    if raw.dtype.kind == "f":
        fractional = raw != np.floor(raw)
        if fractional.any():
            row = _first(fractional)
            raise FeatureInputError(f"not an integer id: {raw[row]!r}", column, _row(frame, row))
    ids = raw.astype(np.int64)
    negative = ids < 0
    if negative.any():
        row = _first(negative)
        raise FeatureInputError(f"negative id: {ids[row]}", column, _row(frame, row))
    return ids


def _amount_column(frame: pd.DataFrame) -> np.ndarray:
    values = frame[TX_AMOUNT]
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise FeatureInputError(f"expected numbers, got dtype {values.dtype}", TX_AMOUNT)
    amount = values.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(amount) | (amount < 0) | (amount > MAX_AMOUNT)
    if bad.any():
        row = _first(bad)
        raise FeatureInputError(f"amount missing or out of range [0, {MAX_AMOUNT:g}]: {amount[row]!r}", TX_AMOUNT,
                                _row(frame, row))
    return amount


def _fraud_column(frame: pd.DataFrame) -> np.ndarray:
    """Fraud labels as 0/1 int64; a missing column or a missing value means "not fraud"."""
    if TX_FRAUD not in frame.columns:
        return np.zeros(len(frame), dtype=np.int64)
    values = frame[TX_FRAUD]
    if not pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        raise FeatureInputError(f"expected 0/1 labels, got dtype {values.dtype}", TX_FRAUD)
    fraud = values.to_numpy(dtype=np.float64, na_value=np.nan)
    fraud = np.where(np.isnan(fraud), 0.0, fraud)
    bad = (fraud != 0) & (fraud != 1)
    if bad.any():
        row = _first(bad)
        raise FeatureInputError(f"expected 0/1 label, got {fraud[row]!r}", TX_FRAUD, _row(frame, row))
    return fraud.astype(np.int64)


def _known_at_column(frame: pd.DataFrame, timestamp: np.ndarray, delay_s: float,
                     known_at: np.ndarray | None) -> np.ndarray:
    """When each row's label is known (epoch s; inf = never): ``known_at``, else the frame's LABEL_KNOWN_AT column,
    else the transaction time plus the label delay."""
    if known_at is None and LABEL_KNOWN_AT in frame.columns:
        values = frame[LABEL_KNOWN_AT]
        if pd.api.types.is_datetime64_any_dtype(values):
            known = np.full(len(frame), np.inf)
            present = values.notna().to_numpy()
            known[present] = datetime_to_epoch_seconds(values[present])
            known_at = known
        elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            known_at = values.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            raise FeatureInputError(f"expected date-times or epoch seconds, got dtype {values.dtype}", LABEL_KNOWN_AT)
    if known_at is None:
        return timestamp + delay_s
    known_at = np.asarray(known_at, dtype=np.float64)
    if known_at.shape != timestamp.shape:
        raise FeatureInputError(f"{known_at.shape[0]} label times for {timestamp.shape[0]} rows", LABEL_KNOWN_AT)
    early = known_at < timestamp
    if early.any():
        row = _first(early)
        raise FeatureInputError("label known before its transaction", LABEL_KNOWN_AT, _row(frame, row))
    return np.where(np.isnan(known_at), np.inf, known_at)


def _check_unique_ids(frame: pd.DataFrame, transaction_id: np.ndarray) -> None:
    duplicated = pd.Index(transaction_id).duplicated(keep=False)
    if duplicated.any():
        rows = np.flatnonzero(duplicated & (transaction_id == transaction_id[_first(duplicated)]))
        raise FeatureInputError(f"transaction id {transaction_id[rows[0]]} appears more than once (rows "
                                f"{rows[:5].tolist()})", TRANSACTION_ID, _row(frame, int(rows[1])))


class _TimeRanks:
    """Exact integer ranks of times among the distinct transaction times, found with sorted (fast) searches.

    Bounds are always monotone functions of the transaction's own time (``t - w``), so they are computed in
    global time order, where they are sorted, and scattered back to input rows.
    """

    def __init__(self, timestamp: np.ndarray, transaction_id: np.ndarray) -> None:
        self.order = np.lexsort((transaction_id, timestamp))
        self._sorted = timestamp[self.order]
        self.unique = np.unique(self._sorted)
        self.rank = self.rank_of(_shifted_back(), inclusive=True)  # rank of each row's own time

    def rank_of(self, bound_of: Callable[[np.ndarray], np.ndarray], inclusive: bool) -> np.ndarray:
        """Per input row: number of distinct times ``< bound`` (inclusive) or ``<= bound``, ``bound = bound_of(t)``.

        ``bound_of`` must be non-decreasing (see :func:`_shifted_back`).
        """
        ranks = np.empty(self.order.shape[0], dtype=np.int64)
        ranks[self.order] = np.searchsorted(self.unique, bound_of(self._sorted), side="left" if inclusive else "right")
        return ranks


class _SortedGroups:
    """Rows sorted by (group columns, timestamp, transaction id), with exact time searches inside each group.

    All arrays are in sorted order; ``order[k]`` is the input row at sorted position ``k``.
    """

    def __init__(self, groups: Sequence[np.ndarray], timestamp: np.ndarray, times: _TimeRanks) -> None:
        group_code = _group_code(groups)
        within_time_order = np.argsort(group_code[times.order], kind="stable")
        self.order = times.order[within_time_order]
        n = self.order.shape[0]
        self.timestamp = timestamp[self.order]
        self.position = np.arange(n)
        sorted_code = group_code[self.order]
        starts_group = np.empty(n, dtype=bool)
        starts_group[:1] = True
        starts_group[1:] = sorted_code[1:] != sorted_code[:-1]
        self.group_rank = np.cumsum(starts_group) - 1
        self.group_start = np.flatnonzero(starts_group)[self.group_rank]
        self._times = times
        self._stride = np.int64(times.unique.shape[0] + 1)
        self._key = self.group_rank * self._stride + times.rank[self.order]

    def first_after(self, bound_of: Callable[[np.ndarray], np.ndarray], inclusive: bool = False) -> np.ndarray:
        """Per sorted row: index of the first row of its group with time ``> bound`` (``>=`` if inclusive).

        ``bound = bound_of(t)`` for the row's time ``t`` (epoch seconds), non-decreasing in ``t``.  Returns the
        group's end when there is none.  The queries are sorted, so the search is fast.
        """
        rank = self._times.rank_of(bound_of, inclusive)[self.order]
        return np.searchsorted(self._key, self.group_rank * self._stride + rank, side="left")

    def group_cumsum(self, values: np.ndarray) -> np.ndarray:
        """Inclusive cumulative sum restarting at each group (values in sorted order)."""
        return pd.Series(values).groupby(self.group_rank, sort=False).cumsum().to_numpy(dtype=np.float64)

    def range_sum(self, cumsum: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
        """Sum of rows ``[start, stop)`` of each row's group from its :meth:`group_cumsum`."""
        upper = np.where(stop > self.group_start, cumsum[np.maximum(stop - 1, 0)], 0.0)
        lower = np.where(start > self.group_start, cumsum[np.maximum(start - 1, 0)], 0.0)
        return np.where(stop > start, upper - lower, 0.0)


def _group_code(groups: Sequence[np.ndarray]) -> np.ndarray:
    """One int64 per row that orders rows like the tuple of group columns (non-negative ids)."""
    code = groups[0]
    for column in groups[1:]:
        width = int(column.max(initial=0)) + 1
        if int(code.max(initial=0)) >= np.iinfo(np.int64).max // width:  # would overflow: use dense codes
            code = np.unique(code, return_inverse=True)[1].astype(np.int64)
            column = np.unique(column, return_inverse=True)[1].astype(np.int64)
            width = int(column.max(initial=0)) + 1
        code = code * width + column
    return code


def compute_features(frame: pd.DataFrame, config: FeatureConfig = DEFAULT_CONFIG,
                     known_at: np.ndarray | None = None) -> pd.DataFrame:
    """Compute every feature of ``config`` for every row of a transaction frame.

    Parameters
    ----------
    frame : handbook columns ``TRANSACTION_ID`` (unique), ``TX_DATETIME`` (datetime64, naive = UTC),
        ``CUSTOMER_ID``, ``TERMINAL_ID``, ``TX_AMOUNT`` and optionally ``TX_FRAUD`` (0/1; missing = not fraud) and
        ``TX_FRAUD_KNOWN_AT`` (:data:`LABEL_KNOWN_AT`).  Rows may come in any order.  A fraud label counts in the
        terminal features once known: at its ``known_at``, by default ``label_delay_days`` after its transaction
        (the fixed delay of the handbook, and of training without a label model).
    config : windows and thresholds.
    known_at : when each row's label became known (epoch s, input row order; NaN = never, never before the
        transaction), e.g. from a label model with analysts; overrides the frame's column.

    Returns
    -------
    float64 frame with columns ``config.feature_names()``, same index and row order as ``frame``.

    Raises
    ------
    FeatureInputError : a required column is missing, or a value is missing or invalid (names column and row),
        or a transaction id appears twice.
    """
    names = config.feature_names()
    columns = _InputColumns(frame)
    columns.known_at = _known_at_column(frame, columns.timestamp, config.label_delay_s, known_at)
    out = np.empty((len(frame), len(names)), dtype=np.float64)
    if len(frame):
        index = {name: i for i, name in enumerate(names)}
        times = _TimeRanks(columns.timestamp, columns.transaction_id)
        out[:, index["TX_AMOUNT"]] = columns.amount
        out[:, index["TX_DURING_WEEKEND"]] = weekend_flags(columns.timestamp)
        out[:, index["TX_DURING_NIGHT"]] = night_flags(columns.timestamp, config.night_end_hour)
        for name, values in _customer_features(columns, times, config).items():
            out[:, index[name]] = values
        for name, values in _terminal_features(columns, times, config).items():
            out[:, index[name]] = values
    return pd.DataFrame(out, index=frame.index, columns=names)


def _shifted_back(*shifts_s: float) -> Callable[[np.ndarray], np.ndarray]:
    """Bound ``t - s1 - s2 ...`` (s), subtracted left to right as the incremental features do."""

    def bound(time: np.ndarray) -> np.ndarray:
        for shift_s in shifts_s:
            time = time - shift_s
        return time

    return bound


def _scatter(order: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
    """Values given in sorted order, returned in input row order."""
    values = np.empty(sorted_values.shape[0], dtype=np.float64)
    values[order] = sorted_values
    return values


def _customer_features(columns: _InputColumns, times: _TimeRanks, config: FeatureConfig) -> dict[str, np.ndarray]:
    groups = _SortedGroups([columns.customer_id], columns.timestamp, times)
    t = groups.timestamp
    position = groups.position
    amount = columns.amount[groups.order]
    amount_cumsum = groups.group_cumsum(amount)
    history_s = config.history_days * DAY_S
    features: dict[str, np.ndarray] = {}

    for days in config.customer_windows_days:
        window_s = days * DAY_S
        start = groups.first_after(_shifted_back(window_s))
        count = position - start + 1
        total = groups.range_sum(amount_cumsum, start, position + 1)
        features[f"CUSTOMER_ID_NB_TX_{days}DAY_WINDOW"] = _scatter(groups.order, count.astype(np.float64))
        features[f"CUSTOMER_ID_AVG_AMOUNT_{days}DAY_WINDOW"] = _scatter(groups.order, total / count)

    history_start = groups.first_after(_shifted_back(history_s))
    history_stop = groups.first_after(_shifted_back(), inclusive=True)  # strictly earlier times only
    history_count = history_stop - history_start
    history_mean = groups.range_sum(amount_cumsum, history_start, history_stop) / np.maximum(history_count, 1)
    ratio = np.where(history_count > 0, amount / np.maximum(history_mean, AMOUNT_RATIO_MIN_MEAN), 1.0)
    features["CUSTOMER_AMOUNT_RATIO_HISTORY"] = _scatter(groups.order, ratio)
    novelty = np.empty((t.shape[0], 3), dtype=np.float64)
    card_novelty_many(t, amount, history_start, history_stop, t, amount, novelty, 0)
    for j, name in enumerate(("CUSTOMER_AMOUNT_ZSCORE", "CUSTOMER_HOUR_SHARE", "CUSTOMER_NB_SAME_AMOUNT")):
        features[name] = _scatter(groups.order, novelty[:, j])
    sequence_names = config.sequence_feature_names()
    if sequence_names:
        sequence = np.empty((t.shape[0], len(sequence_names)), dtype=np.float64)
        terminal = columns.terminal_id[groups.order]
        card_sequence_many(t, amount, terminal, history_start, history_stop, t, terminal, history_s,
                           config.sequence_length, sequence, 0)
        for j, name in enumerate(sequence_names):
            features[name] = _scatter(groups.order, sequence[:, j])

    # Baseline window (t - history, t - recent]: ends before t, or (recent 0) at this row, like the terminal windows.
    baseline_stop = np.minimum(groups.first_after(_shifted_back(config.recent_days * DAY_S)), position + 1)
    baseline_count = np.maximum(baseline_stop - history_start, 0)
    baseline_mean = (groups.range_sum(amount_cumsum, history_start, baseline_stop)
                     / np.maximum(baseline_count, 1))
    baseline_ratio = np.where(baseline_count > 0, amount / np.maximum(baseline_mean, AMOUNT_RATIO_MIN_MEAN), 1.0)
    features["CUSTOMER_AMOUNT_RATIO_BASELINE"] = _scatter(groups.order, baseline_ratio)

    previous = np.maximum(position - 1, 0)
    has_previous = (position > groups.group_start) & (t[previous] > t - history_s)
    since_last = np.where(has_previous, t - t[previous], history_s)
    features["CUSTOMER_SECONDS_SINCE_LAST_TX"] = _scatter(groups.order, since_last)

    burst = position - groups.first_after(_shifted_back(config.burst_window_s)) + 1
    features["CUSTOMER_NB_TX_BURST_WINDOW"] = _scatter(groups.order, burst.astype(np.float64))

    pairs = _SortedGroups([columns.customer_id, columns.terminal_id], columns.timestamp, times)
    seen_before = (pairs.first_after(_shifted_back(), inclusive=True)
                   > pairs.first_after(_shifted_back(history_s)))
    features["CUSTOMER_TERMINAL_IS_NEW"] = _scatter(pairs.order, (~seen_before).astype(np.float64))

    day_start = groups.first_after(_shifted_back(DISTINCT_TERMINALS_WINDOW_S))
    distinct = _distinct_terminals(groups, pairs, day_start)
    features["CUSTOMER_NB_TERMINALS_1DAY_WINDOW"] = _scatter(groups.order, distinct)
    return features


def _distinct_terminals(groups: _SortedGroups, pairs: _SortedGroups, start: np.ndarray) -> np.ndarray:
    """Distinct terminals among customer-sorted rows ``[start, k]`` for every row ``k``.

    A row counts when the next transaction of the same customer at the same terminal comes after ``k``; rows are
    visited by their distance back from ``k``, so the work is the total window length (small for 1 day).
    """
    n = groups.position.shape[0]
    customer_position = np.empty(n, dtype=np.int64)
    customer_position[groups.order] = groups.position
    pair_in_customer_order = customer_position[pairs.order]
    next_same_terminal = np.full(n, n, dtype=np.int64)
    same_pair_follows = pairs.group_rank[1:] == pairs.group_rank[:-1]
    next_same_terminal[pair_in_customer_order[:-1][same_pair_follows]] = pair_in_customer_order[1:][same_pair_follows]

    distinct = np.ones(n, dtype=np.float64)
    earlier_in_window = groups.position - start
    active = np.flatnonzero(earlier_in_window >= 1)
    back = 1
    while active.size:
        distinct[active] += next_same_terminal[active - back] > active
        back += 1
        active = active[earlier_in_window[active] >= back]
    return distinct


@njit(cache=True, nogil=True)
def _known_fraud_kernel(t, fraud_t, fraud_known, window_lo, stop, episode_lo, fresh_lo, fresh_hi, fresh_windows_s,
                        no_episode_s, frauds, age, fresh):  # pragma: no cover - compiled
    """Per row: frauds known at t in each delayed window, the episode age, the frauds known in each fresh window.

    Fraud index ranges come from the caller: ``[window_lo[i, j], stop[i])`` per delayed window,
    ``[episode_lo[i], stop[i])`` for the episode, ``[fresh_lo[i], fresh_hi[i])`` for the fresh windows.
    """
    for i in range(t.shape[0]):
        ti = t[i]
        for j in range(window_lo.shape[1]):
            count = 0
            for k in range(window_lo[i, j], stop[i]):
                if fraud_known[k] <= ti:
                    count += 1
            frauds[i, j] = count
        age[i] = no_episode_s
        for k in range(episode_lo[i], stop[i]):
            if fraud_known[k] <= ti:
                age[i] = ti - fraud_t[k]
                break
        for j in range(fresh_windows_s.shape[0]):
            window_start = ti - fresh_windows_s[j]
            count = 0
            for k in range(fresh_lo[i], fresh_hi[i]):
                if window_start < fraud_known[k] <= ti:
                    count += 1
            fresh[i, j] = count


def _terminal_features(columns: _InputColumns, times: _TimeRanks, config: FeatureConfig) -> dict[str, np.ndarray]:
    groups = _SortedGroups([columns.terminal_id], columns.timestamp, times)
    delay_s = config.label_delay_s
    # Rows up to window_end, and never past this row itself (ties at t when the delay is 0).
    stop = np.minimum(groups.first_after(_shifted_back(delay_s)), groups.position + 1)
    fraud = columns.fraud[groups.order]
    fraud_rows = np.flatnonzero(fraud)  # sorted positions of the fraud rows: grouped by terminal, in time order

    def fraud_index(position: np.ndarray) -> np.ndarray:
        """Number of fraud rows before each sorted position."""
        return np.searchsorted(fraud_rows, position, side="left")

    features: dict[str, np.ndarray] = {}
    starts: dict[int, np.ndarray] = {}
    counts = []
    for days in config.terminal_windows_days:
        window_s = days * DAY_S
        start = starts[days] = groups.first_after(_shifted_back(delay_s, window_s))
        counts.append(np.maximum(stop - start, 0))
    window_lo = np.stack([fraud_index(np.minimum(starts[d], stop)) for d in config.terminal_windows_days], axis=1)
    n = groups.position.shape[0]
    frauds = np.zeros((n, len(config.terminal_windows_days)), dtype=np.int64)
    age = np.empty(n, dtype=np.float64)
    fresh_windows_s = np.asarray([days * DAY_S for days in config.fresh_label_windows_days], dtype=np.float64)
    fresh = np.zeros((n, fresh_windows_s.shape[0]), dtype=np.int64)
    fresh_lo = fraud_index(groups.first_after(_shifted_back(config.terminal_retention_s)))
    fresh_hi = fraud_index(groups.first_after(_shifted_back(), inclusive=False))  # every row at or before t
    episode_start = np.minimum(starts[max(config.terminal_windows_days)], stop)
    _known_fraud_kernel(groups.timestamp, groups.timestamp[fraud_rows], columns.known_at[groups.order][fraud_rows],
                        np.ascontiguousarray(window_lo), fraud_index(stop), fraud_index(episode_start), fresh_lo,
                        fresh_hi, fresh_windows_s, config.terminal_retention_s, frauds, age, fresh)
    for j, days in enumerate(config.terminal_windows_days):
        count = counts[j]
        risk = np.where(count > 0, frauds[:, j] / np.maximum(count, 1), 0.0)
        features[f"TERMINAL_ID_NB_TX_{days}DAY_WINDOW"] = _scatter(groups.order, count.astype(np.float64))
        features[f"TERMINAL_ID_RISK_{days}DAY_WINDOW"] = _scatter(groups.order, risk)
    lag_s = config.terminal_burst_lag_s
    if lag_s > 0:  # rows in (t - lag - w, t - lag): settled across partitions
        settled = groups.first_after(_shifted_back(lag_s), inclusive=True)
        burst = settled - groups.first_after(_shifted_back(lag_s, config.burst_window_s))
    else:
        burst = groups.position - groups.first_after(_shifted_back(config.burst_window_s)) + 1
    features["TERMINAL_NB_TX_BURST_WINDOW"] = _scatter(groups.order, burst.astype(np.float64))
    # Earliest fraud of the longest window known at t.
    features["TERMINAL_FRAUD_EPISODE_AGE"] = _scatter(groups.order, age)
    for j, days in enumerate(config.fresh_label_windows_days):
        features[f"TERMINAL_NB_FRAUDS_KNOWN_{days}DAY"] = _scatter(groups.order, fresh[:, j].astype(np.float64))
    return features
