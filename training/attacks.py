"""Novel attack families 5 to 7 of the simulator (scenario 4, card testing, lives in the simulator itself).

Each family is a function ``(config, profiles, used_keys, rng) -> (seconds, customer, terminal, amount)`` that
returns its fraudulent transactions (seconds since the start of the period, int64 ids, amounts rounded to cents),
drawn only from ``rng`` so that a family on or off leaves the rest of the data unchanged.  They strike every day
from ``config.novel_start_date`` on (:func:`fraudstream.training.simulator.novel_days`) and differ in kind:

* **distant cash-out** (5): a stolen card is emptied within hours at terminals far from the cardholder's home,
  in a run of large amounts (a multiple of the customer's usual amount);
* **merchant breach** (6): one terminal is taken over for a short window and charges many cards that never paid
  there, one moderate amount each: every card looks almost normal alone, the terminal does not;
* **slow drain** (7): a card gets a small, always identical charge once to a few times a day, for days to
  weeks, at one terminal it never used before: low amounts, a steady new pace and a recurring place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the simulator imports this module inside ``simulate``
    from fraudstream.training.simulator import Profiles, SimulationConfig

DAY_S = 86_400
Transactions = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _empty() -> Transactions:
    return (np.zeros(0, dtype=np.int64),) * 3 + (np.zeros(0),)


def _pack(seconds: np.ndarray, customer: np.ndarray, terminal: np.ndarray, amount: np.ndarray,
          nb_days: int) -> Transactions:
    """Cut at the end of the period and round: seconds to whole s, amounts to cents."""
    seconds = np.floor(seconds).astype(np.int64)
    keep = seconds < nb_days * DAY_S
    return seconds[keep], customer[keep].astype(np.int64), terminal[keep].astype(np.int64), \
        np.round(amount[keep], 2)


def distant_cashout(config: SimulationConfig, profiles: Profiles, used_keys: np.ndarray,
                    rng: np.random.Generator) -> Transactions:
    """Scenario 5: per day ``cashout_cards_per_day`` cards, each a run of ``cashout_count`` transactions within
    ``cashout_span_s`` at terminals at least ``cashout_min_distance`` from home, amounts ``cashout_factor`` x the
    customer's mean amount."""
    from fraudstream.training.simulator import novel_days

    days = novel_days(config)
    if not days.size or config.cashout_cards_per_day == 0:
        return _empty()
    victims = np.concatenate([rng.choice(config.n_customers, config.cashout_cards_per_day, replace=False)
                              for _ in days]).astype(np.int64)
    start = np.repeat(days, config.cashout_cards_per_day) * DAY_S + rng.uniform(0, DAY_S, size=victims.size)
    count = rng.integers(config.cashout_count[0], config.cashout_count[1] + 1, size=victims.size)
    owner = np.repeat(np.arange(victims.size), count)
    customer = victims[owner]
    seconds = start[owner] + rng.uniform(0, config.cashout_span_s, size=owner.size)
    amount = profiles.mean_amount[customer] * rng.uniform(*config.cashout_factor, size=owner.size)
    terminal = _far_terminals(customer, profiles, config.cashout_min_distance, rng)
    return _pack(seconds, customer, terminal, amount, config.nb_days)


def _far_terminals(customer: np.ndarray, profiles: Profiles, min_distance: float,
                   rng: np.random.Generator) -> np.ndarray:
    """A random terminal at least ``min_distance`` from each customer (redrawn until it is; falls back to the
    farthest of the draws on a grid too small for the distance)."""
    n_terminals = profiles.terminal_xy.shape[0]
    terminal = rng.integers(0, n_terminals, size=customer.size)
    for _ in range(100):
        gap = profiles.customer_xy[customer] - profiles.terminal_xy[terminal]
        near = np.hypot(gap[:, 0], gap[:, 1]) < min_distance
        if not near.any():
            break
        terminal[near] = rng.integers(0, n_terminals, size=int(near.sum()))
    return terminal


def merchant_breach(config: SimulationConfig, profiles: Profiles, used_keys: np.ndarray,
                    rng: np.random.Generator) -> Transactions:
    """Scenario 6: per day ``breach_terminals_per_day`` terminals, each charging ``breach_cards`` distinct cards
    that never used it, one ``breach_amount`` each, within ``breach_span_s``."""
    from fraudstream.training.simulator import novel_days

    days = novel_days(config)
    if not days.size or config.breach_terminals_per_day == 0:
        return _empty()
    n_terminals = config.n_terminals
    terminals = np.concatenate([rng.choice(n_terminals, config.breach_terminals_per_day, replace=False)
                                for _ in days]).astype(np.int64)
    start = (np.repeat(days, config.breach_terminals_per_day) * DAY_S
             + rng.uniform(0, DAY_S - config.breach_span_s, size=terminals.size))
    parts_customer, parts_owner = [], []
    for k, terminal in enumerate(terminals.tolist()):
        n_cards = int(rng.integers(config.breach_cards[0], config.breach_cards[1] + 1))
        pool = rng.choice(config.n_customers, min(config.n_customers, 2 * n_cards), replace=False)
        fresh = pool[~np.isin(pool * n_terminals + terminal, used_keys)][:n_cards]
        parts_customer.append(fresh.astype(np.int64))
        parts_owner.append(np.full(fresh.size, k, dtype=np.int64))
    customer = np.concatenate(parts_customer)
    owner = np.concatenate(parts_owner)
    seconds = start[owner] + rng.uniform(0, config.breach_span_s, size=owner.size)
    amount = rng.uniform(*config.breach_amount, size=owner.size)
    return _pack(seconds, customer, terminals[owner], amount, config.nb_days)


def slow_drain(config: SimulationConfig, profiles: Profiles, used_keys: np.ndarray,
               rng: np.random.Generator) -> Transactions:
    """Scenario 7: per day ``drain_cards_per_day`` cards, each charged one fixed ``drain_amount``
    ``drain_per_day`` times a day for ``drain_days`` days, at any hour, at one terminal the card never used."""
    from fraudstream.training.simulator import draw_unused_terminals, novel_days

    days = novel_days(config)
    if not days.size or config.drain_cards_per_day == 0:
        return _empty()
    victims = np.concatenate([rng.choice(config.n_customers, config.drain_cards_per_day, replace=False)
                              for _ in days]).astype(np.int64)
    first_day = np.repeat(days, config.drain_cards_per_day)
    terminal_of = draw_unused_terminals(victims, used_keys, config.n_terminals, rng)
    amount_of = rng.uniform(*config.drain_amount, size=victims.size)
    length = rng.integers(config.drain_days[0], config.drain_days[1] + 1, size=victims.size)
    victim_day = np.repeat(np.arange(victims.size), length)
    day = first_day[victim_day] + (np.arange(victim_day.size) - np.repeat(np.cumsum(length) - length, length))
    per_day = rng.integers(config.drain_per_day[0], config.drain_per_day[1] + 1, size=victim_day.size)
    owner = np.repeat(victim_day, per_day)
    seconds = np.repeat(day, per_day) * DAY_S + rng.uniform(0, DAY_S, size=owner.size)
    return _pack(seconds, victims[owner], terminal_of[owner], amount_of[owner], config.nb_days)
