"""The worker's garbage-collector settings, each case in a fresh interpreter (the test process keeps its own)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from fraudstream.stream.collector import MIDDLE_RATIO, OLD_RATIO


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_tuning_freezes_what_is_alive_and_raises_the_thresholds_yet_cycles_made_later_are_collected():
    result = _run("""
        import gc, json, weakref
        from fraudstream.stream.collector import tune_collector
        class Node:
            pass
        before = Node(); before.me = before
        frozen, young = tune_collector(12_345)
        after = Node(); after.me = after
        ref = weakref.ref(after)
        del after
        collected = gc.collect()
        print(json.dumps({"frozen": frozen, "young": young, "threshold": gc.get_threshold(),
                          "freeze_count": gc.get_freeze_count(), "cycle_freed": ref() is None,
                          "again": tune_collector(54_321)}))
    """)
    assert result["frozen"] > 1000 and result["freeze_count"] == result["frozen"]
    assert result["young"] == 12_345 and result["threshold"] == [12_345, MIDDLE_RATIO, OLD_RATIO]
    assert result["cycle_freed"]
    assert result["again"] == [0, 54_321]  # a second worker in the process: thresholds only, nothing re-frozen


def test_zero_leaves_the_collector_as_it_is():
    result = _run("""
        import gc, json
        from fraudstream.stream.collector import tune_collector
        default = gc.get_threshold()
        print(json.dumps({"returned": tune_collector(0), "default": default, "threshold": gc.get_threshold(),
                          "freeze_count": gc.get_freeze_count()}))
    """)
    assert result["returned"] == [0, result["default"][0]]
    assert result["threshold"] == result["default"] and result["freeze_count"] == 0
