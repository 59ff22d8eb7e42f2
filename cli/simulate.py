"""``fraudstream simulate``: write a simulated, labelled transaction stream to a file."""

from __future__ import annotations

import time
from dataclasses import fields

import click
import pandas as pd

from fraudstream.detectors.schema import TX_FRAUD, TX_FRAUD_SCENARIO, TX_TIME_DAYS
from fraudstream.training.datasets import DataFileError, file_format, write_transactions
from fraudstream.training.simulator import NOVEL_SCENARIOS, SimulationConfig, simulate

DEFAULT_OUT = "data/transactions.csv.gz"
_DEFAULTS = {f.name: f.default for f in fields(SimulationConfig)}


class _Range(click.ParamType):
    """``LOW,HIGH`` (inclusive range) as a tuple of two numbers of one type."""

    name = "LOW,HIGH"

    def __init__(self, kind: type) -> None:
        self.kind = kind

    def convert(self, value, param, ctx):  # noqa: ANN001 - click's signature
        if isinstance(value, tuple):
            return value
        parts = str(value).split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            return tuple(self.kind(p.strip()) for p in parts)
        except ValueError:
            self.fail(f"expected LOW,HIGH ({self.kind.__name__}s), got {value!r}", param, ctx)


def _families(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected scenario numbers like 4,5,6,7, got {value!r}",
                                 param_hint="--novel-families") from None


#: Options of the novel families 5-7: (option, config field, click type, help).
_FAMILY_OPTIONS = [
    ("--cashout-cards-per-day", "cashout_cards_per_day", click.IntRange(min=0), "Scenario 5: cards a day."),
    ("--cashout-count", "cashout_count", _Range(int), "Scenario 5: transactions of one run."),
    ("--cashout-factor", "cashout_factor", _Range(float), "Scenario 5: amounts x the customer's mean."),
    ("--cashout-min-distance", "cashout_min_distance", click.FloatRange(min=0),
     "Scenario 5: least distance of the terminals from home (grid units)."),
    ("--breach-terminals-per-day", "breach_terminals_per_day", click.IntRange(min=0),
     "Scenario 6: terminals taken over a day."),
    ("--breach-cards", "breach_cards", _Range(int), "Scenario 6: cards charged in one breach."),
    ("--breach-span", "breach_span_s", click.FloatRange(min=0, min_open=True),
     "Scenario 6: length of a breach (s)."),
    ("--drain-cards-per-day", "drain_cards_per_day", click.IntRange(min=0), "Scenario 7: cards a day."),
    ("--drain-days", "drain_days", _Range(int), "Scenario 7: length of a drain (days)."),
    ("--drain-per-day", "drain_per_day", _Range(int), "Scenario 7: charges a day."),
    ("--drain-amount", "drain_amount", _Range(float), "Scenario 7: the fixed amount of a drain."),
]


def _family_options(function):
    for option, name, kind, help_text in reversed(_FAMILY_OPTIONS):
        default = _DEFAULTS[name]
        shown = ",".join(str(v) for v in default) if isinstance(default, tuple) else default
        function = click.option(option, name, type=kind, default=default,
                                show_default=shown if isinstance(default, tuple) else True,
                                help=help_text)(function)
    return function


def summarize(frame: pd.DataFrame) -> dict[str, float]:
    """Rows, days, tx/day, fraud share and the share of each scenario (of all rows) of a simulated frame."""
    n_rows = len(frame)
    n_days = int(frame[TX_TIME_DAYS].max()) + 1 if n_rows else 0
    summary: dict[str, float] = {
        "rows": n_rows,
        "days": n_days,
        "tx_per_day": n_rows / n_days if n_days else 0.0,
        "fraud_share": float(frame[TX_FRAUD].mean()) if n_rows else 0.0,
    }
    counts = frame[TX_FRAUD_SCENARIO].value_counts().sort_index()
    for scenario, count in counts.items():
        if scenario:
            summary[f"scenario_{scenario}_share"] = count / n_rows
    return summary


@click.command("simulate")
@click.option("--customers", type=click.IntRange(min=1), default=_DEFAULTS["n_customers"], show_default=True,
              help="Number of customers.")
@click.option("--terminals", type=click.IntRange(min=1), default=_DEFAULTS["n_terminals"], show_default=True,
              help="Number of terminals.")
@click.option("--days", type=click.IntRange(min=1), default=_DEFAULTS["nb_days"], show_default=True,
              help="Length of the period (days).")
@click.option("--start-date", default=_DEFAULTS["start_date"], show_default=True,
              help="First day of the period (UTC).")
@click.option("--radius", type=click.FloatRange(min=0, min_open=True), default=_DEFAULTS["radius"],
              show_default=True, help="Customers use the terminals within this distance (grid 100 x 100).")
@click.option("--seed", type=int, default=_DEFAULTS["seed"], show_default=True, help="Random seed.")
@click.option("--terminals-per-day", type=click.IntRange(min=0), default=_DEFAULTS["terminals_per_day"],
              show_default=True, help="Scenario 2: terminals compromised each day.")
@click.option("--terminal-compromise-days", type=click.IntRange(min=0),
              default=_DEFAULTS["terminal_compromise_days"], show_default=True,
              help="Scenario 2: how long a terminal stays compromised (days).")
@click.option("--customers-per-day", type=click.IntRange(min=0), default=_DEFAULTS["customers_per_day"],
              show_default=True, help="Scenario 3: customers compromised each day.")
@click.option("--customer-compromise-days", type=click.IntRange(min=0),
              default=_DEFAULTS["customer_compromise_days"], show_default=True,
              help="Scenario 3: how long a customer stays compromised (days).")
@click.option("--novel-start", "novel_start", default=None, metavar="DATE",
              help="Turn on scenario 4 (card testing) from this date on.")
@click.option("--novel-customers-per-day", type=click.IntRange(min=0),
              default=_DEFAULTS["novel_customers_per_day"], show_default=True,
              help="Scenario 4: cards compromised each day.")
@click.option("--novel-families", "novel_families", default=",".join(str(s) for s in NOVEL_SCENARIOS),
              show_default=True, help="Novel scenarios turned on by --novel-start (4 card testing, 5 distant "
                                      "cash-out, 6 merchant breach, 7 slow drain).")
@_family_options
@click.option("--out", "out", type=click.Path(dir_okay=False), default=DEFAULT_OUT, show_default=True,
              help="Output file: .csv, .csv.gz or .parquet.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
def command(customers: int, terminals: int, days: int, start_date: str, radius: float, seed: int,
            terminals_per_day: int, terminal_compromise_days: int, customers_per_day: int,
            customer_compromise_days: int, novel_start: str | None, novel_customers_per_day: int,
            novel_families: str, out: str, quiet: bool, **family_settings) -> None:
    """Simulate transactions with the handbook method (fraud scenarios 1-3, optional novel attack families 4-7)
    and write them to --out."""
    started = time.perf_counter()
    try:
        config = SimulationConfig(
            n_customers=customers, n_terminals=terminals, nb_days=days, start_date=start_date, radius=radius,
            seed=seed, terminals_per_day=terminals_per_day, terminal_compromise_days=terminal_compromise_days,
            customers_per_day=customers_per_day, customer_compromise_days=customer_compromise_days,
            novel_start_date=novel_start, novel_customers_per_day=novel_customers_per_day,
            novel_families=_families(novel_families), **family_settings,
        )
        file_format(out)
    except (ValueError, DataFileError) as exc:
        raise click.UsageError(str(exc)) from None
    frame = simulate(config, progress=not quiet)
    path = write_transactions(frame, out)
    elapsed_s = time.perf_counter() - started
    if quiet:
        return
    summary = summarize(frame)
    click.echo(f"wrote {path}: {summary['rows']:,} transactions over {summary['days']} days "
               f"({summary['tx_per_day']:,.0f} tx/day), fraud {summary['fraud_share']:.2%}")
    for key, share in summary.items():
        if key.startswith("scenario_"):
            click.echo(f"  {key.removesuffix('_share').replace('_', ' ')}: {share:.3%} of transactions")
    click.echo(f"elapsed {elapsed_s:.1f} s")
