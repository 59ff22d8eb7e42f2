"""Benchmark of one ``Cascade.score`` call by micro-batch size, with the time spent in each stage.

Loads a model bundle, computes the features of a transaction file with the batch path, and scores contiguous
slices of its last rows (random starts, fixed seed) at batch sizes 1, 10, 100, 1,000 and 5,000.  Prints, per
size: calls timed, median and p99 time per call (ms), mean time per row (us), and the mean time per call (ms)
spent in each stage (rules, light, anomaly, heavy, policy, reasons: threshold strings and feature
contributions).

Usage: ``python bench/bench_cascade.py --model-dir DIR --data FILE [--rows 20000] [--sizes 1,10,100,1000,5000]``
(without ``--data``, 60 days of 1,000 customers are simulated first).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

DEFAULT_SIZES = (1, 10, 100, 1000, 5000)
DEFAULT_ROWS = 20_000  # last rows of the file the batches are drawn from
#: Rows scored per batch size (calls = this / size, within the bounds below).
ROWS_PER_SIZE = 50_000
MIN_CALLS = 10
MAX_CALLS = 300
WARMUP_CALLS = 3
MS_PER_S = 1000.0
US_PER_S = 1_000_000.0


def feature_rows(data: str | None, cascade, rows: int):
    """(X, batch) of the last ``rows`` transactions of ``data`` (or of a simulated sample), in time order."""
    from fraudstream.detectors.features.batch import compute_features
    from fraudstream.detectors.schema import TRANSACTION_ID, TX_DATETIME, TransactionBatch

    if data:
        from fraudstream.training.datasets import read_transactions

        frame = read_transactions(data)
    else:
        from fraudstream.training.simulator import SimulationConfig, simulate

        frame = simulate(SimulationConfig(n_customers=1000, n_terminals=2000, nb_days=60, seed=11))
    frame = frame.sort_values([TX_DATETIME, TRANSACTION_ID]).reset_index(drop=True)
    features = compute_features(frame, cascade.feature_config)
    tail = slice(max(0, len(frame) - rows), len(frame))
    X = features[cascade.feature_names].to_numpy(dtype=np.float64)[tail]
    return X, TransactionBatch.from_frame(frame.iloc[tail])


def time_size(cascade, X, batch, size: int, rng: np.random.Generator) -> dict[str, float]:
    """Timings of ``cascade.score`` on batches of ``size`` rows."""
    from fraudstream.detectors.cascade.cascade import TIMING_STAGES

    calls = int(np.clip(ROWS_PER_SIZE // size, MIN_CALLS, MAX_CALLS))
    starts = rng.integers(0, X.shape[0] - size + 1, size=calls + WARMUP_CALLS)
    per_call = np.empty(calls)
    stages = {name: 0.0 for name in TIMING_STAGES}
    flagged = 0
    for k, start in enumerate(starts):
        rows = np.arange(start, start + size)
        Xb, bb = X[rows], batch.take(rows)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        result = cascade.score(Xb, bb, timings)
        elapsed = time.perf_counter() - t0
        if k < WARMUP_CALLS:
            continue
        per_call[k - WARMUP_CALLS] = elapsed
        for name, seconds in timings.items():
            stages[name] += seconds
        flagged += int(np.sum(result.decision != 0))
    out = {
        "calls": calls,
        "median_ms": float(np.median(per_call)) * MS_PER_S,
        "p99_ms": float(np.percentile(per_call, 99)) * MS_PER_S,
        "us_per_row": float(per_call.sum()) / (calls * size) * US_PER_S,
        "flagged_share": flagged / (calls * size),
    }
    out.update({name: seconds / calls * MS_PER_S for name, seconds in stages.items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="model root or version directory")
    parser.add_argument("--data", default=None, help="transaction file (CSV / parquet, handbook columns)")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="last rows of the file to draw batches from")
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="comma-separated batch sizes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from fraudstream.detectors.bundle import load_bundle
    from fraudstream.detectors.cascade.cascade import TIMING_STAGES

    bundle = load_bundle(args.model_dir)
    cascade = bundle.cascade
    X, batch = feature_rows(args.data, cascade, args.rows)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if max(sizes) > X.shape[0]:
        parser.error(f"--sizes: largest batch {max(sizes)} exceeds the {X.shape[0]} rows available")
    rng = np.random.default_rng(args.seed)

    print(f"Cascade.score, model {bundle.version} (anomaly {cascade.anomaly.method}), {X.shape[0]} rows "
          f"x {X.shape[1]} features\n")
    head = ["batch", "calls", "median ms", "p99 ms", "us/row", "flagged"] + [f"{s} ms" for s in TIMING_STAGES]
    print("| " + " | ".join(f"{h:>10}" for h in head) + " |")
    print("| " + " | ".join("-" * 10 for _ in head) + " |")
    for size in sizes:
        r = time_size(cascade, X, batch, size, rng)
        cells = [f"{size:>10,d}", f"{r['calls']:>10d}", f"{r['median_ms']:>10.3f}", f"{r['p99_ms']:>10.3f}",
                 f"{r['us_per_row']:>10.1f}", f"{r['flagged_share']:>10.3f}"]
        cells += [f"{r[s]:>10.3f}" for s in TIMING_STAGES]
        print("| " + " | ".join(cells) + " |", flush=True)
    print("\nstage columns: mean ms per call; flagged: share of BLOCK / REVIEW rows")


if __name__ == "__main__":
    main()
