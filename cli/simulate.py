"""``fraudstream simulate``: write a simulated, labelled transaction stream to a file."""

from __future__ import annotations

import time
from dataclasses import fields

import click
import pandas as pd

from fraudstream.detectors.schema import TX_FRAUD, TX_FRAUD_SCENARIO, TX_TIME_DAYS
from fraudstream.training.datasets import DataFileError, file_format, write_transactions
from fraudstream.training.simulator import SimulationConfig, simulate

DEFAULT_OUT = "data/transactions.csv.gz"
_DEFAULTS = {f.name: f.default for f in fields(SimulationConfig)}


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
@click.option("--out", "out", type=click.Path(dir_okay=False), default=DEFAULT_OUT, show_default=True,
              help="Output file: .csv, .csv.gz or .parquet.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
def command(customers: int, terminals: int, days: int, start_date: str, radius: float, seed: int,
            terminals_per_day: int, terminal_compromise_days: int, customers_per_day: int,
            customer_compromise_days: int, novel_start: str | None, novel_customers_per_day: int, out: str,
            quiet: bool) -> None:
    """Simulate transactions with the handbook method (fraud scenarios 1-3, optional card testing) and write
    them to --out."""
    started = time.perf_counter()
    try:
        config = SimulationConfig(
            n_customers=customers, n_terminals=terminals, nb_days=days, start_date=start_date, radius=radius,
            seed=seed, terminals_per_day=terminals_per_day, terminal_compromise_days=terminal_compromise_days,
            customers_per_day=customers_per_day, customer_compromise_days=customer_compromise_days,
            novel_start_date=novel_start, novel_customers_per_day=novel_customers_per_day,
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
