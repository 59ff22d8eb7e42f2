"""The one feature definition shared by training (batch) and the live stream (incremental).

Every feature is defined in event time.  Windows are half-open ``(t - w, t]`` on the transaction's own timestamp
``t`` (epoch seconds).  Terminal windows are shifted back by the label delay ``d``: ``(t - d - w, t - d]``, and
only labels known by ``t`` count (with the default label feed, a label is known ``d`` after its transaction).

"Earlier" transactions of a customer are those before this one in (timestamp, transaction id) order; the batch
path sorts by that key and the stream processes events of one customer in that order.  Windows that end at ``t``
(customer windows, and terminal windows when ``d`` is 0) hold the transactions at ``t`` only up to this one in
that order.  Windows that end before ``t`` (``(t - w, t)``) hold no transaction at time ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Bump when any feature's meaning, order or default changes; model manifests record it and loading checks it.
FEATURE_SET_VERSION = "fs-1"

DAY_S = 86_400.0
HOUR_S = 3_600.0

#: Smallest mean amount (currency units) used as the divisor of CUSTOMER_AMOUNT_RATIO_HISTORY, so that a history
#: of zero amounts gives a finite ratio.
AMOUNT_RATIO_MIN_MEAN = 0.01


@dataclass(frozen=True)
class FeatureConfig:
    """Window sizes and thresholds of the feature set.

    Parameters
    ----------
    customer_windows_days : window lengths (days) for the customer's count and mean amount.
    terminal_windows_days : window lengths (days) for the terminal's count and fraud risk.
    label_delay_days : how long after a transaction its label is known (days); shifts the terminal windows.
    night_end_hour : a transaction is at night when its UTC hour is ``<= night_end_hour`` (handbook: 6).
    burst_window_s : window (s) of the customer's burst count.
    history_days : how long the customer's history is kept for novelty and the amount ratio (days).
    """

    customer_windows_days: tuple[int, ...] = (1, 7, 30)
    terminal_windows_days: tuple[int, ...] = (1, 7, 30)
    label_delay_days: int = 7
    night_end_hour: int = 6
    burst_window_s: float = HOUR_S
    history_days: int = 30

    @property
    def label_delay_s(self) -> float:
        return self.label_delay_days * DAY_S

    @property
    def customer_retention_s(self) -> float:
        """How far back (s) customer state must reach."""
        return max(max(self.customer_windows_days), self.history_days) * DAY_S

    @property
    def terminal_retention_s(self) -> float:
        """How far back (s) terminal state must reach."""
        return (max(self.terminal_windows_days) + self.label_delay_days) * DAY_S

    def feature_names(self) -> list[str]:
        """Feature names in model-input order."""
        names = ["TX_AMOUNT", "TX_DURING_WEEKEND", "TX_DURING_NIGHT"]
        for w in self.customer_windows_days:
            names += [f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW", f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"]
        for w in self.terminal_windows_days:
            names += [f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW", f"TERMINAL_ID_RISK_{w}DAY_WINDOW"]
        names += OWN_FEATURES
        return names


#: Features of our own, beyond the handbook baseline (see ``FEATURE_DOCS``).
OWN_FEATURES: list[str] = [
    "CUSTOMER_AMOUNT_RATIO_HISTORY",
    "CUSTOMER_TERMINAL_IS_NEW",
    "CUSTOMER_SECONDS_SINCE_LAST_TX",
    "CUSTOMER_NB_TX_BURST_WINDOW",
    "CUSTOMER_NB_TERMINALS_1DAY_WINDOW",
]

#: Features the anomaly detector looks at: the customer's own behaviour (amount, pace, places), not the
#: label-driven terminal risk, so that it flags behaviour unlike legitimate traffic rather than known fraud
#: patterns (which the supervised models already cover).
ANOMALY_FEATURES: list[str] = [
    "TX_AMOUNT",
    "TX_DURING_NIGHT",
    "CUSTOMER_ID_NB_TX_1DAY_WINDOW",
    "CUSTOMER_AMOUNT_RATIO_HISTORY",
    "CUSTOMER_TERMINAL_IS_NEW",
    "CUSTOMER_SECONDS_SINCE_LAST_TX",
    "CUSTOMER_NB_TX_BURST_WINDOW",
    "CUSTOMER_NB_TERMINALS_1DAY_WINDOW",
]

FEATURE_DOCS: dict[str, str] = {
    "TX_AMOUNT": "amount of the transaction (currency units)",
    "TX_DURING_WEEKEND": "1 when the UTC weekday is Saturday or Sunday",
    "TX_DURING_NIGHT": "1 when the UTC hour is <= night_end_hour",
    "CUSTOMER_ID_NB_TX_{w}DAY_WINDOW": "customer's transactions in (t - w days, t], this one included",
    "CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW": "mean amount of those transactions",
    "TERMINAL_ID_NB_TX_{w}DAY_WINDOW": "terminal's transactions in (t - d - w days, t - d] (this one included "
    "only when d is 0)",
    "TERMINAL_ID_RISK_{w}DAY_WINDOW": "known frauds among them / their count (0 when none)",
    "CUSTOMER_AMOUNT_RATIO_HISTORY": "amount / mean amount of the customer's earlier transactions in "
    "(t - history_days, t), the mean floored at AMOUNT_RATIO_MIN_MEAN; 1 when there are none",
    "CUSTOMER_TERMINAL_IS_NEW": "1 when the customer has no earlier transaction at this terminal in "
    "(t - history_days, t)",
    "CUSTOMER_SECONDS_SINCE_LAST_TX": "seconds since the customer's previous transaction in "
    "(t - history_days, t]; history_days in seconds when there is none",
    "CUSTOMER_NB_TX_BURST_WINDOW": "customer's transactions in (t - burst_window_s, t], this one included",
    "CUSTOMER_NB_TERMINALS_1DAY_WINDOW": "distinct terminals among the customer's transactions in (t - 1 day, t], "
    "this one included",
}

DEFAULT_CONFIG = FeatureConfig()
FEATURE_NAMES: list[str] = DEFAULT_CONFIG.feature_names()

