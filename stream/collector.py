"""The worker's garbage-collector settings: long-lived objects frozen once warm, young collections rarer.

A batch allocates a few hundred thousand short-lived container objects (records, decoded events, buffer entries),
and with CPython's default thresholds (700, 10, 10) every 700 allocations start a young collection and every
70,000 a collection of the middle generation, which scans whatever survived so far: the held-back buffer (up to
tens of thousands of records), the loaded model and the libraries' own objects.  Measured on the worker bench
(100,000 transactions, one partition, the default label feed, 2-core machine): 2,099 collections took 1.6 s of
the worker's CPU, about a quarter of it; with the objects alive after warm-up frozen and young collections every
50,000 allocations, CPU per million transactions went from 65-70 s to 41-46 s (two runs each, alternating), and
every 10,000 did better still (32-33 against 38-41 s, two runs each; 3,000: no clearer).  A young collection with
10,000 survivors pauses the worker for about half a millisecond (50,000: 2.7 ms).

Reference cycles are still collected: young ones every :data:`YOUNG_THRESHOLD` allocations, old ones after
``YOUNG_THRESHOLD * MIDDLE_RATIO * OLD_RATIO`` allocations (some 200,000 transactions) at the latest.
"""

from __future__ import annotations

import gc

#: Allocations (net) between two collections of the youngest generation (CPython's default: 700).
YOUNG_THRESHOLD = 10_000
#: Young collections between two collections of the middle generation (default 10).
MIDDLE_RATIO = 20
#: Middle collections between two full collections (default 10).
OLD_RATIO = 100


def tune_collector(young_threshold: int = YOUNG_THRESHOLD) -> tuple[int, int]:
    """Freeze every object alive now (the loaded model, modules, the app: never scanned again) and raise the
    collection thresholds; ``young_threshold`` 0 leaves the collector as it is.

    Returns (objects frozen, young threshold in force).  Called after the model is loaded and warmed up; in a
    process that starts several workers (tests) only the first call freezes.
    """
    if young_threshold <= 0:
        return 0, gc.get_threshold()[0]
    frozen = 0
    if not gc.get_freeze_count():
        gc.collect()  # what is garbage now is not frozen with the rest
        gc.freeze()
        frozen = gc.get_freeze_count()
    gc.set_threshold(young_threshold, MIDDLE_RATIO, OLD_RATIO)
    return frozen, young_threshold
