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
#: Session and rebalance time-outs (s) of the agent's consumer: the worker's (aiokafka's defaults).  The embedded
#: broker holds a new group's first join for half the rebalance time-out, waiting for more members: 30 s with
#: Faust's default of 60 s, 5 s with this, as for the worker.
NOOP_GROUP_TIMEOUT_S = 10.0


def main(bootstrap: str, topic: str, expected: int, result_path: str) -> None:
    import faust

    app = faust.App(f"bench-noop-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}", value_serializer="raw",
                    web_enabled=False, consumer_auto_offset_reset="earliest", topic_partitions=1,
                    datadir=tempfile.mkdtemp(prefix="fraudstream-bench-faust-"),
                    broker_session_timeout=NOOP_GROUP_TIMEOUT_S, broker_rebalance_timeout=NOOP_GROUP_TIMEOUT_S)
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
