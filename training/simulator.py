"""Sample transaction stream: the Fraud Detection Handbook's simulation method, vectorized, plus a novel attack.

The legitimate stream follows the published method (Le Borgne et al., "Reproducible Machine Learning for Credit
Card Fraud Detection - Practical Handbook", chapter 3): customers and terminals on a 100 x 100 grid, each
customer paying at the terminals within ``radius`` of it, with a Poisson number of transactions a day.  Three
fraud scenarios are added as in the handbook:

1. every amount above ``amount_fraud_threshold`` is fraud;
2. each day ``terminals_per_day`` random terminals are compromised for ``terminal_compromise_days`` days: all
   their transactions in that period are fraud;
3. each day ``customers_per_day`` random customers are compromised for ``customer_compromise_days`` days: a third
   of their transactions in that period get their amount multiplied by 5 and are fraud.

Scenarios 4 to 7 are novel attack families of our own, off by default (``novel_start_date=None``), each different
in kind from 1-3 and from each other; from that date on, every day (5 to 7 live in :mod:`fraudstream.training.attacks`):

4. *card testing*: ``novel_customers_per_day`` cards each get one burst of small transactions at terminals the
   customer never used, followed hours later by a few large ones;
5. *distant cash-out*: ``cashout_cards_per_day`` cards each make a run of a few large amounts within hours at
   terminals far from home (at least ``cashout_min_distance`` grid units);
6. *merchant breach*: ``breach_terminals_per_day`` terminals are taken over for a short window in which many
   cards that never used them pay there;
7. *slow drain*: ``drain_cards_per_day`` cards each get one or a few small, identical charges a day for days
   to weeks at one terminal the customer never used.

Each part draws from its own random stream (spawned from ``seed``), so turning the novel families on leaves the
rest of the data unchanged, and the same configuration always gives the same frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from fraudstream.detectors.schema import (
    ALL_COLUMNS,
    CUSTOMER_ID,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
    TX_FRAUD_SCENARIO,
    TX_TIME_DAYS,
    TX_TIME_SECONDS,
)

DAY_S = 86_400
#: Side of the square grid on which customers and terminals live (grid units).
GRID_SIZE = 100.0
#: Customer profile draws (handbook): mean amount ~ U(5, 100), std = mean * 0.5, mean tx/day ~ U(0, 4).
MEAN_AMOUNT_RANGE = (5.0, 100.0)
STD_AMOUNT_RATIO = 0.5
MEAN_TX_PER_DAY_RANGE = (0.0, 4.0)
#: Time of day of a legitimate transaction ~ Normal(mean, std) (s), kept only inside (0, 86400).
TIME_OF_DAY_MEAN_S = DAY_S / 2
TIME_OF_DAY_STD_S = 20_000.0
#: Most customers of one grid cell compared with its terminals at once when finding the terminals within the
#: radius (bounds memory where the radius covers much of the plane).
RADIUS_BLOCK_CUSTOMERS = 512
#: Most grid cells along a side when finding the terminals within the radius (cells are wider than the radius
#: when it is tiny against the plane, which only adds candidates).
MAX_GRID_CELLS = 4096
#: Give up redrawing terminals the customer never used after this many rounds (only hit on tiny grids).
MAX_TERMINAL_REDRAWS = 100

SCENARIO_LEGIT = 0
SCENARIO_AMOUNT = 1
SCENARIO_TERMINAL = 2
SCENARIO_CUSTOMER = 3
SCENARIO_CARD_TESTING = 4
SCENARIO_DISTANT_CASHOUT = 5
SCENARIO_MERCHANT_BREACH = 6
SCENARIO_SLOW_DRAIN = 7
#: The novel attack families, in scenario order (all start on ``novel_start_date``).
NOVEL_SCENARIOS = (SCENARIO_CARD_TESTING, SCENARIO_DISTANT_CASHOUT, SCENARIO_MERCHANT_BREACH, SCENARIO_SLOW_DRAIN)


@dataclass(frozen=True)
class SimulationConfig:
    """Size, period and fraud scenarios of a simulated stream (defaults: the handbook's published data set).

    Parameters
    ----------
    n_customers, n_terminals : population sizes.
    nb_days : length of the period (days), starting at ``start_date`` (naive UTC; a date means 00:00:00).
    radius : a customer uses the terminals within this Euclidean distance (grid units, grid 100 x 100).
    seed : root seed; the same configuration gives the same frame.
    amount_fraud_threshold : scenario 1, amounts strictly above it are fraud (currency units).
    terminals_per_day, terminal_compromise_days : scenario 2.
    customers_per_day, customer_compromise_days : scenario 3.
    customer_fraud_share, customer_fraud_amount_factor : scenario 3, share of the compromised customer's
        transactions made fraudulent, and the factor applied to their amounts.
    novel_start_date : first day of scenario 4 (card testing); ``None`` turns it off.
    novel_customers_per_day : cards compromised by card testing each day.
    novel_burst_size : inclusive range of the number of small test transactions in one burst.
    novel_burst_amount : range of the small amounts (currency units).
    novel_burst_span_s : a burst lasts at most this long (s).
    novel_cashout_count : inclusive range of the number of large transactions after the burst.
    novel_cashout_delay_s : range of the delay between the end of the burst and each large transaction (s).
    novel_cashout_factor : range of the large amounts as multiples of the customer's mean amount.
    novel_families : which novel scenarios (of 4..7) are on once ``novel_start_date`` is set.
    cashout_cards_per_day : scenario 5, cards compromised each day.
    cashout_count : scenario 5, inclusive range of the number of transactions of one run.
    cashout_span_s : scenario 5, a run lasts at most this long (s).
    cashout_factor : scenario 5, range of the amounts as multiples of the customer's mean amount.
    cashout_min_distance : scenario 5, the terminals are at least this far from the customer (grid units).
    breach_terminals_per_day : scenario 6, terminals taken over each day.
    breach_cards : scenario 6, inclusive range of the number of distinct cards charged in one breach.
    breach_span_s : scenario 6, a breach lasts at most this long (s).
    breach_amount : scenario 6, range of the amounts (currency units).
    drain_cards_per_day : scenario 7, cards compromised each day.
    drain_days : scenario 7, inclusive range of the length of a drain (days).
    drain_per_day : scenario 7, inclusive range of the charges a day.
    drain_amount : scenario 7, range of the fixed amount of one drain (currency units).
    """

    n_customers: int = 5000
    n_terminals: int = 10000
    nb_days: int = 183
    start_date: str = "2018-04-01"
    radius: float = 5.0
    seed: int = 0
    amount_fraud_threshold: float = 220.0
    terminals_per_day: int = 2
    terminal_compromise_days: int = 28
    customers_per_day: int = 3
    customer_compromise_days: int = 14
    customer_fraud_share: float = 1 / 3
    customer_fraud_amount_factor: float = 5.0
    novel_start_date: str | None = None
    novel_customers_per_day: int = 2
    novel_burst_size: tuple[int, int] = (5, 15)
    novel_burst_amount: tuple[float, float] = (0.5, 5.0)
    novel_burst_span_s: float = 3_600.0
    novel_cashout_count: tuple[int, int] = (1, 3)
    novel_cashout_delay_s: tuple[float, float] = (1_800.0, 4 * 3_600.0)
    novel_cashout_factor: tuple[float, float] = (3.0, 8.0)
    novel_families: tuple[int, ...] = NOVEL_SCENARIOS
    cashout_cards_per_day: int = 2
    cashout_count: tuple[int, int] = (3, 8)
    cashout_span_s: float = 6 * 3_600.0
    cashout_factor: tuple[float, float] = (1.5, 4.0)
    cashout_min_distance: float = 30.0
    breach_terminals_per_day: int = 1
    breach_cards: tuple[int, int] = (15, 40)
    breach_span_s: float = 2 * 3_600.0
    breach_amount: tuple[float, float] = (10.0, 150.0)
    drain_cards_per_day: int = 1
    drain_days: tuple[int, int] = (7, 21)
    drain_per_day: tuple[int, int] = (1, 3)
    drain_amount: tuple[float, float] = (1.0, 9.99)

    def __post_init__(self) -> None:
        positive = ("n_customers", "n_terminals", "nb_days")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"SimulationConfig.{name}: expected >= 1, got {getattr(self, name)!r}")
        if self.terminals_per_day > self.n_terminals or self.terminals_per_day < 0:
            raise ValueError("SimulationConfig.terminals_per_day: expected 0..n_terminals, "
                             f"got {self.terminals_per_day}")
        for name in ("customers_per_day", "novel_customers_per_day", "cashout_cards_per_day",
                     "drain_cards_per_day"):
            if not 0 <= getattr(self, name) <= self.n_customers:
                raise ValueError(f"SimulationConfig.{name}: expected 0..n_customers, got {getattr(self, name)}")
        if self.radius <= 0:
            raise ValueError(f"SimulationConfig.radius: expected > 0, got {self.radius}")
        if not 0 <= self.customer_fraud_share <= 1:
            raise ValueError("SimulationConfig.customer_fraud_share: expected in [0, 1], "
                             f"got {self.customer_fraud_share}")
        if self.novel_burst_span_s + self.novel_cashout_delay_s[1] >= DAY_S:
            raise ValueError("SimulationConfig: novel_burst_span_s + novel_cashout_delay_s must fit in one day")
        if not 0 <= self.breach_terminals_per_day <= self.n_terminals:
            raise ValueError("SimulationConfig.breach_terminals_per_day: expected 0..n_terminals, got "
                             f"{self.breach_terminals_per_day}")
        unknown = set(self.novel_families) - set(NOVEL_SCENARIOS)
        if unknown:
            raise ValueError(f"SimulationConfig.novel_families: expected scenarios among {NOVEL_SCENARIOS}, got "
                             f"{sorted(unknown)}")
        for name in ("cashout_span_s", "breach_span_s"):
            if not 0 < getattr(self, name) < DAY_S:
                raise ValueError(f"SimulationConfig.{name}: expected in (0, {DAY_S}) s, got {getattr(self, name)}")
        if self.breach_cards[1] > self.n_customers:
            raise ValueError(f"SimulationConfig.breach_cards: at most n_customers cards, got {self.breach_cards}")
        for name in ("novel_burst_size", "novel_burst_amount", "novel_cashout_count", "novel_cashout_delay_s",
                     "novel_cashout_factor", "cashout_count", "cashout_factor", "breach_cards", "breach_amount",
                     "drain_days", "drain_per_day", "drain_amount"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"SimulationConfig.{name}: expected 0 <= low <= high, got {(low, high)!r}")
        _day_offset(self.start_date, self.start_date)  # fails early on an unreadable date
        if self.novel_start_date is not None:
            _day_offset(self.start_date, self.novel_start_date)


class Profiles(NamedTuple):
    """Customer and terminal profiles (arrays indexed by id)."""

    customer_xy: np.ndarray  # (n_customers, 2) grid units
    mean_amount: np.ndarray  # currency units
    std_amount: np.ndarray  # currency units
    mean_tx_per_day: np.ndarray  # tx/day
    terminal_xy: np.ndarray  # (n_terminals, 2) grid units


class Reach(NamedTuple):
    """Terminals within the radius of each customer, as compressed rows: customer c uses
    ``terminal_ids[offsets[c]:offsets[c + 1]]``."""

    offsets: np.ndarray  # int64, n_customers + 1
    terminal_ids: np.ndarray  # int64

    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)


def generate_profiles(config: SimulationConfig, rng: np.random.Generator) -> Profiles:
    """Draw customer and terminal profiles as in the handbook."""
    n_c = config.n_customers
    customer_xy = rng.uniform(0.0, GRID_SIZE, size=(n_c, 2))
    mean_amount = rng.uniform(*MEAN_AMOUNT_RANGE, size=n_c)
    mean_tx_per_day = rng.uniform(*MEAN_TX_PER_DAY_RANGE, size=n_c)
    terminal_xy = rng.uniform(0.0, GRID_SIZE, size=(config.n_terminals, 2))
    return Profiles(customer_xy, mean_amount, mean_amount * STD_AMOUNT_RATIO, mean_tx_per_day, terminal_xy)


def terminals_within_radius(customer_xy: np.ndarray, terminal_xy: np.ndarray, radius: float) -> Reach:
    """Terminals at Euclidean distance ``< radius`` of each customer (cells of customers, no per-row loop).

    The plane is cut into square cells at least the radius wide; the customers of a cell are compared only with
    the terminals of that cell and its eight neighbours (a terminal nearer than the radius is in one of them):
    the same pairs as comparing every customer with every terminal, the distance computed the same way, and on
    20,000 customers with 40,000 terminals about a second instead of half a minute.
    """
    n_customers = len(customer_xy)
    if n_customers == 0 or len(terminal_xy) == 0:
        return Reach(np.zeros(n_customers + 1, dtype=np.int64), np.zeros(0, dtype=np.int64))
    both = np.concatenate([customer_xy, terminal_xy])
    low = both.min(axis=0)
    extent = float((both.max(axis=0) - low).max())
    # wider than the radius by more than rounding; never so narrow that cell numbers grow past MAX_GRID_CELLS
    cell = max(radius * (1.0 + 1e-9) + 1e-12, extent / MAX_GRID_CELLS)
    customer_cell = np.floor((customer_xy - low) / cell).astype(np.int64)
    terminal_cell = np.floor((terminal_xy - low) / cell).astype(np.int64)
    rows_per_column = int(max(customer_cell[:, 1].max(), terminal_cell[:, 1].max())) + 3  # a free cell each side
    terminal_key = terminal_cell[:, 0] * rows_per_column + terminal_cell[:, 1] + 1
    terminal_order = np.argsort(terminal_key, kind="stable")
    terminal_key_sorted = terminal_key[terminal_order]
    customer_key = customer_cell[:, 0] * rows_per_column + customer_cell[:, 1] + 1
    customer_order = np.argsort(customer_key, kind="stable")
    keys, starts = np.unique(customer_key[customer_order], return_index=True)
    ends = np.append(starts[1:], n_customers)
    pair_customer, pair_terminal = [], []
    for key, start, end in zip(keys.tolist(), starts.tolist(), ends.tolist()):
        # the three cells of each neighbouring column are consecutive keys
        column_starts = [key + dx * rows_per_column - 1 for dx in (-1, 0, 1)]
        bounds = np.searchsorted(terminal_key_sorted, [k for c in column_starts for k in (c, c + 3)])
        window = np.sort(np.concatenate([terminal_order[bounds[i]:bounds[i + 1]] for i in range(0, 6, 2)]))
        if window.size == 0:
            continue
        window_xy = terminal_xy[window][None, :, :]
        for lo in range(start, end, RADIUS_BLOCK_CUSTOMERS):
            members = customer_order[lo : min(end, lo + RADIUS_BLOCK_CUSTOMERS)]
            dist = np.sqrt(((customer_xy[members][:, None, :] - window_xy) ** 2).sum(axis=2))
            rows, cols = np.nonzero(dist < radius)  # row-major: by member, terminals ascending
            pair_customer.append(members[rows])
            pair_terminal.append(window[cols])
    customer = np.concatenate(pair_customer).astype(np.int64) if pair_customer else np.zeros(0, dtype=np.int64)
    terminal = np.concatenate(pair_terminal).astype(np.int64) if pair_terminal else np.zeros(0, dtype=np.int64)
    order = np.argsort(customer, kind="stable")  # grouped by customer, each customer's terminals still ascending
    offsets = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(np.bincount(customer, minlength=n_customers))])
    return Reach(offsets, terminal[order])


def _legit_day(day: int, profiles: Profiles, reach: Reach, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """One day of legitimate transactions: (seconds since start, customer, terminal, amount), unsorted."""
    n_tx = rng.poisson(profiles.mean_tx_per_day)
    customer = np.repeat(np.arange(len(n_tx), dtype=np.int64), n_tx)
    time_of_day = np.trunc(rng.normal(TIME_OF_DAY_MEAN_S, TIME_OF_DAY_STD_S, size=len(customer))).astype(np.int64)
    mean = profiles.mean_amount[customer]
    amount = rng.normal(mean, profiles.std_amount[customer])
    negative = amount < 0
    amount[negative] = rng.uniform(0.0, 2.0 * mean[negative])
    n_reach = reach.counts()[customer]
    pick = np.floor(rng.random(len(customer)) * n_reach).astype(np.int64)
    keep = (time_of_day > 0) & (time_of_day < DAY_S) & (n_reach > 0)
    terminal = reach.terminal_ids[reach.offsets[customer[keep]] + pick[keep]]
    seconds = time_of_day[keep] + day * DAY_S
    return seconds, customer[keep], terminal, np.round(amount[keep], 2)


def _compromised_terminals(config: SimulationConfig, rng: np.random.Generator) -> np.ndarray:
    """Boolean (n_terminals, nb_days): terminal compromised on that day (scenario 2)."""
    starts = np.repeat(np.arange(config.nb_days), config.terminals_per_day)
    terminals = np.concatenate([rng.choice(config.n_terminals, config.terminals_per_day, replace=False)
                                for _ in range(config.nb_days)]) if config.terminals_per_day else starts
    change = np.zeros((config.n_terminals, config.nb_days + 1), dtype=np.int32)
    np.add.at(change, (terminals, starts), 1)
    np.add.at(change, (terminals, np.minimum(starts + config.terminal_compromise_days, config.nb_days)), -1)
    return np.cumsum(change, axis=1)[:, : config.nb_days] > 0


def _customer_fraud_mask(customer: np.ndarray, day: np.ndarray, config: SimulationConfig,
                         rng: np.random.Generator) -> np.ndarray:
    """Scenario 3: per day, pool the chosen customers' transactions of the next days and mark a share of them."""
    mask = np.zeros(len(customer), dtype=bool)
    if config.customers_per_day == 0 or len(customer) == 0:
        return mask
    key = customer * config.nb_days + day
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    for start in range(config.nb_days):
        chosen = rng.choice(config.n_customers, config.customers_per_day, replace=False)
        lo = np.searchsorted(sorted_key, chosen * config.nb_days + start, side="left")
        hi = np.searchsorted(sorted_key, chosen * config.nb_days + min(start + config.customer_compromise_days,
                                                                        config.nb_days), side="left")
        pool = np.concatenate([order[a:b] for a, b in zip(lo, hi)])
        n_fraud = int(len(pool) * config.customer_fraud_share)
        if n_fraud:
            mask[rng.choice(pool, n_fraud, replace=False)] = True
    return mask


def _day_offset(start_date: str, date: str) -> float:
    """Days (float) from ``start_date`` to ``date``; raises ValueError naming an unreadable date."""
    try:
        return (_naive_utc(date) - _naive_utc(start_date)).total_seconds() / DAY_S
    except (ValueError, TypeError) as exc:
        raise ValueError(f"SimulationConfig: unreadable date {date!r} ({exc})") from None


def _naive_utc(date: str) -> pd.Timestamp:
    stamp = pd.Timestamp(date)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp


def _draw_unused_terminals(customer: np.ndarray, used_keys: np.ndarray, n_terminals: int,
                           rng: np.random.Generator) -> np.ndarray:
    """Random terminals (any distance) that ``customer`` never used; ``used_keys`` = sorted customer*n_t+terminal."""
    terminal = rng.integers(0, n_terminals, size=len(customer))
    for _ in range(MAX_TERMINAL_REDRAWS):
        clash = np.isin(customer * n_terminals + terminal, used_keys)
        if not clash.any():
            return terminal
        terminal[clash] = rng.integers(0, n_terminals, size=int(clash.sum()))
    raise ValueError("could not find terminals the compromised customers never used (too few terminals)")


def novel_days(config: SimulationConfig) -> np.ndarray:
    """Day numbers (since the start) on which the novel families strike; empty when they are off."""
    if config.novel_start_date is None:
        return np.zeros(0, dtype=np.int64)
    first_day = max(0, int(np.ceil(_day_offset(config.start_date, config.novel_start_date))))
    return np.arange(first_day, config.nb_days, dtype=np.int64)


def draw_unused_terminals(customer: np.ndarray, used_keys: np.ndarray, n_terminals: int,
                          rng: np.random.Generator) -> np.ndarray:
    """Random terminals (any distance) that ``customer`` never used; ``used_keys`` = sorted customer*n_t+terminal."""
    return _draw_unused_terminals(customer, used_keys, n_terminals, rng)


def _card_testing(config: SimulationConfig, profiles: Profiles, used_keys: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Scenario 4 transactions: (seconds since start, customer, terminal, amount), all fraud."""
    empty = (np.zeros(0, dtype=np.int64),) * 3 + (np.zeros(0),)
    if SCENARIO_CARD_TESTING not in config.novel_families or config.novel_customers_per_day == 0:
        return empty
    days = novel_days(config)
    if len(days) == 0:
        return empty
    victims = np.concatenate([rng.choice(config.n_customers, config.novel_customers_per_day, replace=False)
                              for _ in days]).astype(np.int64)
    victim_day = np.repeat(days, config.novel_customers_per_day)
    n_v = len(victims)
    latest_start = DAY_S - 1 - config.novel_burst_span_s - config.novel_cashout_delay_s[1]
    burst_start = victim_day * DAY_S + rng.uniform(0, latest_start, size=n_v)
    # small test transactions, within novel_burst_span_s of the burst start
    n_small = rng.integers(config.novel_burst_size[0], config.novel_burst_size[1] + 1, size=n_v)
    small_owner = np.repeat(np.arange(n_v), n_small)
    small_time = burst_start[small_owner] + rng.uniform(0, config.novel_burst_span_s, size=len(small_owner))
    small_amount = rng.uniform(*config.novel_burst_amount, size=len(small_owner))
    # large cash-out transactions, hours after the burst
    n_large = rng.integers(config.novel_cashout_count[0], config.novel_cashout_count[1] + 1, size=n_v)
    large_owner = np.repeat(np.arange(n_v), n_large)
    large_time = (burst_start[large_owner] + config.novel_burst_span_s
                  + rng.uniform(*config.novel_cashout_delay_s, size=len(large_owner)))
    large_amount = (profiles.mean_amount[victims[large_owner]]
                    * rng.uniform(*config.novel_cashout_factor, size=len(large_owner)))
    owner = np.concatenate([small_owner, large_owner])
    customer = victims[owner]
    terminal = _draw_unused_terminals(customer, used_keys, config.n_terminals, rng)
    seconds = np.floor(np.concatenate([small_time, large_time])).astype(np.int64)
    amount = np.round(np.concatenate([small_amount, large_amount]), 2)
    return seconds, customer, terminal, amount


def build_population(config: SimulationConfig) -> tuple[Profiles, Reach]:
    """The customer and terminal profiles and each customer's terminals, exactly as :func:`simulate` uses them."""
    profiles = generate_profiles(config, _streams(config)[0])
    return profiles, terminals_within_radius(profiles.customer_xy, profiles.terminal_xy, config.radius)


def _streams(config: SimulationConfig) -> list[np.random.Generator]:
    """Independent random streams: profiles, legitimate transactions, scenarios 2, 3, 4, 5, 6 and 7."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(8)]


def simulate(config: SimulationConfig | None = None, progress: bool = False) -> pd.DataFrame:
    """Simulate a labelled transaction stream in handbook columns, sorted by time.

    Returns
    -------
    DataFrame with ``TRANSACTION_ID`` (0..n-1 in time order), ``TX_DATETIME`` (datetime64[ns], naive UTC),
    ``CUSTOMER_ID``, ``TERMINAL_ID``, ``TX_AMOUNT`` (2 decimals), ``TX_TIME_SECONDS`` (s since the start),
    ``TX_TIME_DAYS``, ``TX_FRAUD`` (int8 0/1) and ``TX_FRAUD_SCENARIO`` (int8, 0 = legitimate).
    """
    config = config or SimulationConfig()
    _, tx_rng, terminal_rng, customer_rng, novel_rng, *family_rngs = _streams(config)
    profiles, reach = build_population(config)

    days = range(config.nb_days)
    if progress:
        from tqdm import tqdm

        days = tqdm(days, desc="simulating", unit="day")
    parts = [_legit_day(day, profiles, reach, tx_rng) for day in days]
    seconds, customer, terminal, amount = (np.concatenate([p[i] for p in parts]) for i in range(4))
    day = seconds // DAY_S

    scenario = np.zeros(len(seconds), dtype=np.int8)
    scenario[amount > config.amount_fraud_threshold] = SCENARIO_AMOUNT
    scenario[_compromised_terminals(config, terminal_rng)[terminal, day]] = SCENARIO_TERMINAL
    customer_fraud = _customer_fraud_mask(customer, day, config, customer_rng)
    scenario[customer_fraud] = SCENARIO_CUSTOMER
    amount[customer_fraud] = np.round(amount[customer_fraud] * config.customer_fraud_amount_factor, 2)

    used_keys = np.unique(customer * config.n_terminals + terminal)
    from fraudstream.training.attacks import distant_cashout, merchant_breach, slow_drain

    families = [(SCENARIO_CARD_TESTING, _card_testing(config, profiles, used_keys, novel_rng))]
    for number, family, rng in zip((SCENARIO_DISTANT_CASHOUT, SCENARIO_MERCHANT_BREACH, SCENARIO_SLOW_DRAIN),
                                   (distant_cashout, merchant_breach, slow_drain), family_rngs):
        if number in config.novel_families:
            families.append((number, family(config, profiles, used_keys, rng)))
    for number, novel in families:
        seconds, customer, terminal, amount = (np.concatenate([a, b]) for a, b in zip((seconds, customer, terminal,
                                                                                       amount), novel))
        scenario = np.concatenate([scenario, np.full(len(novel[0]), number, dtype=np.int8)])

    order = np.argsort(seconds, kind="stable")
    seconds = seconds[order]
    start = _naive_utc(config.start_date).to_datetime64().astype("datetime64[ns]")
    frame = pd.DataFrame({
        TRANSACTION_ID: np.arange(len(seconds), dtype=np.int64),
        TX_DATETIME: start + (seconds * 1_000_000_000).astype("timedelta64[ns]"),
        CUSTOMER_ID: customer[order],
        TERMINAL_ID: terminal[order],
        TX_AMOUNT: amount[order],
        TX_TIME_SECONDS: seconds,
        TX_TIME_DAYS: seconds // DAY_S,
        TX_FRAUD: (scenario[order] > 0).astype(np.int8),
        TX_FRAUD_SCENARIO: scenario[order],
    })
    return frame[list(ALL_COLUMNS)]
