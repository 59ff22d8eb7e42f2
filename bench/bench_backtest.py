"""Benchmark of ``fraudstream backtest``: a whole file decided in event time, with and without analysts.

Loads a model bundle and a labelled transaction file, then backtests from the end of the warm-up (the features'
look-back, 38 days by default) to the end of the file, once with the simulated analysts (1 h, 100 cards/day)
and once with chargebacks only; every transaction, warm-up included, goes through the worker core.  Prints, per
run: transactions decided, transactions fed (warm-up included), wall time (s), CPU time of the process (s),
CPU time per transaction fed (us) and decided transactions per wall second.  The target for the default
183-day simulated file is at most 5 minutes a run on this project's 2-core machine.

Usage: ``python bench/bench_backtest.py --model-dir DIR --data FILE [--from DATE] [--to DATE]``
"""

from __future__ import annotations

import argparse
import time

TARGET_S = 300.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--from", dest="start", default=None, help="first day decided [after the warm-up]")
    parser.add_argument("--to", dest="end", default=None, help="end of the period [the day after the last row]")
    args = parser.parse_args()

    import pandas as pd

    from fraudstream.detectors.bundle import load_bundle
    from fraudstream.detectors.schema import TX_DATETIME
    from fraudstream.training.analysts import AnalystSettings
    from fraudstream.training.backtest import BacktestSettings, run_backtest, warmup_days

    bundle = load_bundle(args.model_dir)
    from fraudstream.training.datasets import read_transactions

    frame = read_transactions(args.data, require_labels=True)
    probe = BacktestSettings(pd.Timestamp("2000-01-01"), pd.Timestamp("2000-01-02"))
    first = frame[TX_DATETIME].min().normalize() + pd.Timedelta(days=warmup_days(probe, bundle.cascade))
    start = pd.Timestamp(args.start) if args.start else first
    end = pd.Timestamp(args.end) if args.end else frame[TX_DATETIME].max().normalize() + pd.Timedelta(days=1)
    rows = []
    for label, analysts in (("analysts 1 h, 100 cards/day", AnalystSettings()), ("chargebacks only", None)):
        wall, cpu = time.perf_counter(), time.process_time()
        run = run_backtest(frame, bundle.cascade, BacktestSettings(start, end, analysts=analysts))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        times = frame[TX_DATETIME]
        fed = int(((times >= start - pd.Timedelta(days=warmup_days(run.settings, bundle.cascade)))
                   & (times < end)).sum())
        rows.append((label, len(run.decisions), fed, wall, cpu, len(run.decisions) / wall))
    print(f"backtest {start.date()}..{(end - pd.Timedelta(days=1)).date()} of {args.data}, model {bundle.version}")
    print(f"{'run':<30} {'decided':>10} {'fed':>10} {'wall s':>8} {'CPU s':>8} {'CPU us/tx':>9} {'tx/s':>8}  "
          f"target <= {TARGET_S:.0f} s")
    for label, n, fed, wall, cpu, rate in rows:
        print(f"{label:<30} {n:>10,} {fed:>10,} {wall:>8.1f} {cpu:>8.1f} {cpu / max(fed, 1) * 1e6:>9.0f} "
              f"{rate:>8,.0f}  {'ok' if wall <= TARGET_S else 'MISSED'}")


if __name__ == "__main__":
    main()
