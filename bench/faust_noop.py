"""The do-nothing Faust agent the worker is compared with: ``stream.take(2000, within=0.05)`` and nothing else.

Run as ``python -m fraudstream.bench.faust_noop BOOTSTRAP TOPIC EVENTS RESULT_JSON``; writes the events handled
after the first batch and the seconds between the first and the last batch, then exits.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

NOOP_BATCH_SIZE = 2000
NOOP_BATCH_WAIT_S = 0.05


def faust_group_timing(session_timeout_s: float) -> dict[str, float]:
    """Faust's group settings for the workers' session time-out (s).  Faust's own defaults (60 s) made the
    embedded broker hold the agent's first join 30 s, half of it."""
    from fraudstream.stream.broker.group_timing import group_timing

    timing = group_timing(session_timeout_s)
    return {"broker_session_timeout": timing["session_timeout_ms"] / 1000,
            "broker_heartbeat_interval": timing["heartbeat_interval_ms"] / 1000,
            "broker_rebalance_timeout": timing["rebalance_timeout_ms"] / 1000}


def main(bootstrap: str, topic: str, expected: int, result_path: str) -> None:
    import faust

    from fraudstream.bench.stream_runs import BENCH_GROUP_SESSION_TIMEOUT_S

    app = faust.App(f"bench-noop-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}", value_serializer="raw",
                    web_enabled=False, consumer_auto_offset_reset="earliest", topic_partitions=1,
                    datadir=tempfile.mkdtemp(prefix="fraudstream-bench-faust-"),
                    **faust_group_timing(BENCH_GROUP_SESSION_TIMEOUT_S))
    source = app.topic(topic, value_type=bytes)
    state: dict = {"count": 0, "first": None}

    @app.agent(source)
    async def noop(stream):
        async for values in stream.take(NOOP_BATCH_SIZE, within=NOOP_BATCH_WAIT_S):
            now = time.perf_counter()
            if state["first"] is None:
                state["first"], state["first_batch"] = now, len(values)
            state["count"] += len(values)
            if state["count"] >= expected:
                Path(result_path).write_text(json.dumps({"events": state["count"] - state["first_batch"],
                                                         "seconds": now - state["first"]}))
                os._exit(0)

    sys.argv = [sys.argv[0], "worker", "--loglevel", "WARNING"]
    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
