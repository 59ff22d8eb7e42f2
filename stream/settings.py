"""Typed settings of the stream services (worker, replay, demo), read from environment variables.

Every field is read from ``FRAUDSTREAM_<FIELD NAME IN UPPER CASE>``; the broker and Redis also honour the common
``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL``.  Read once when a service starts (:meth:`StreamSettings.from_env`),
then passed in explicitly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

ENV_PREFIX = "FRAUDSTREAM_"

#: Variables read without the prefix too (conventional names), field -> variable.
COMMON_ENV_NAMES: dict[str, str] = {
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "redis_url": "REDIS_URL",
}


@dataclass(frozen=True)
class StreamSettings:
    """Settings of the stream worker and its tools.

    Empty ``kafka_bootstrap_servers`` / ``redis_url`` mean "start the embedded broker / Redis" where a command
    supports that (``fraudstream demo``, the integration tests).
    """

    kafka_bootstrap_servers: str = field(default="", metadata={"help": "Kafka bootstrap servers, host:port[,...]"})
    redis_url: str = field(default="", metadata={"help": "Redis URL of the online feature store and review queue"})
    model_dir: str = field(default="models", metadata={"help": "model root (follows LATEST) or a version dir"})
    app_id: str = field(default="fraudstream", metadata={"help": "Faust app id = consumer group id"})
    transactions_topic: str = field(default="transactions", metadata={"help": "input topic of transactions"})
    labels_topic: str = field(default="labels", metadata={"help": "input topic of fraud/legit labels"})
    decisions_topic: str = field(default="decisions", metadata={"help": "output topic of decisions"})
    dlq_topic: str = field(default="transactions-dlq", metadata={"help": "dead-letter topic for bad events"})
    partitions: int = field(default=3, metadata={"help": "partitions of the topics the worker creates"})
    batch_size: int = field(default=2000, metadata={"help": "largest micro-batch (events)"})
    batch_wait_s: float = field(default=0.05, metadata={"help": "longest wait to fill a micro-batch (s)"})
    metrics_port: int = field(default=9464, metadata={"help": "HTTP port of the Prometheus metrics (0 = off)"})
    web_port: int = field(default=6066, metadata={"help": "Faust web port of the worker"})
    review_page_port: int = field(default=8080, metadata={"help": "HTTP port of the analysts' review page"})
    state_ttl_s: int = field(default=45 * 86_400, metadata={"help": "expiry of online feature state keys (s)"})
    decision_ttl_s: int = field(default=14 * 86_400, metadata={"help": "how long decisions are kept for dedup (s)"})
    redis_prefix: str = field(default="fs", metadata={"help": "prefix of every Redis key fraudstream writes"})
    model_poll_s: float = field(default=2.0, metadata={"help": "how often the model directory is checked (s)"})
    log_level: str = field(default="INFO", metadata={"help": "log level"})
    engine: str = field(default="direct", metadata={
        "help": "worker's consumer: direct (aiokafka batches, explicit commits) or faust (agent, stream.take)"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "StreamSettings":
        """Settings from the environment (``FRAUDSTREAM_*``), then explicit overrides (e.g. CLI options)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None and f.name in COMMON_ENV_NAMES:
                raw = env.get(COMMON_ENV_NAMES[f.name])
            if raw is None:
                continue
            values[f.name] = _cast(f.name, raw, type(f.default))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> "StreamSettings":
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(environment variable, default, help) per field, for ``--help`` texts."""
        rows = []
        for f in fields(cls):
            name = ENV_PREFIX + f.name.upper()
            if f.name in COMMON_ENV_NAMES:
                name += f" (or {COMMON_ENV_NAMES[f.name]})"
            rows.append((name, repr(f.default), f.metadata.get("help", "")))
        return rows


def _cast(name: str, raw: str, kind: type) -> Any:
    try:
        if kind is bool:
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        return raw
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}: expected {kind.__name__}, got {raw!r}") from None
