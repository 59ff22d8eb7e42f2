"""The consumer group's session time-out and the heartbeat and rebalance times that follow from it.

The session time-out is how long the group coordinator waits for a member's heartbeat before it drops the member
and hands its partitions to the others.  Longer survives longer pauses (a stalled event loop, a slow commit);
shorter lets the group notice a dead worker sooner.  Some brokers (the embedded one) also hold the first join of
a new group for half of it, waiting for more members: 5 s of every worker start with the default.  Brokers accept
6 s to 300 s by default (``group.min.session.timeout.ms`` / ``group.max.session.timeout.ms``).
"""

from __future__ import annotations

#: Default session time-out (s): aiokafka's own default.
DEFAULT_GROUP_SESSION_TIMEOUT_S = 10.0
#: Heartbeats per session time-out (Kafka's advice: at most a third of it between two heartbeats).
HEARTBEATS_PER_SESSION = 3


def group_timing(session_timeout_s: float) -> dict[str, int]:
    """aiokafka's ``session_timeout_ms``, ``heartbeat_interval_ms`` and ``rebalance_timeout_ms`` for a session
    time-out (s); the rebalance time-out is the session time-out, as aiokafka does when it is not given."""
    session_ms = int(round(session_timeout_s * 1000))
    return {"session_timeout_ms": session_ms, "heartbeat_interval_ms": max(1, session_ms // HEARTBEATS_PER_SESSION),
            "rebalance_timeout_ms": session_ms}
