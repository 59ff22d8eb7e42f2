"""Typed settings of the stream worker and of the tools that talk to its topics (replay, demo).

Every field is read from ``FRAUDSTREAM_WORKER_<FIELD NAME IN UPPER CASE>``; the broker and Redis also from the
common ``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL``.  Read once at the edge (:meth:`StreamSettings.from_env`, in
the CLI), then passed in explicitly; constructing the model reads no environment.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from fraudstream.detectors.env_settings import EnvSettings
from fraudstream.detectors.units import DAY_S

ENV_PREFIX = "FRAUDSTREAM_WORKER_"


class StreamSettings(EnvSettings):
    """Settings of the stream worker and its tools.

    Empty ``kafka_bootstrap_servers`` / ``redis_url`` mean "start the embedded broker / Redis" where a command
    supports that (``fraudstream demo``, the integration tests).
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    kafka_bootstrap_servers: str = Field("", description="Kafka bootstrap servers, host:port[,...]",
                                         validation_alias=AliasChoices(f"{ENV_PREFIX}KAFKA_BOOTSTRAP_SERVERS",
                                                                       "KAFKA_BOOTSTRAP_SERVERS"))
    redis_url: str = Field("", description="Redis URL of the online feature store and review queue",
                           validation_alias=AliasChoices(f"{ENV_PREFIX}REDIS_URL", "REDIS_URL"))
    model_dir: str = Field("models", description="model root (follows LATEST) or a version dir")
    app_id: str = Field("fraudstream", description="consumer group id (and Faust app id)")
    transactions_topic: str = Field("transactions", description="input topic of transactions")
    labels_topic: str = Field("labels", description="input topic of fraud/legit labels")
    decisions_topic: str = Field("decisions", description="output topic of decisions")
    dlq_topic: str = Field("transactions-dlq", description="dead-letter topic for bad events")
    partitions: int = Field(3, ge=1, description="partitions of the topics the worker creates")
    batch_size: int = Field(2000, ge=1, description="largest micro-batch (events)")
    batch_wait_s: float = Field(0.05, gt=0, description="longest wait to fill a micro-batch (s)")
    metrics_port: int = Field(9464, ge=0, description="HTTP port of the Prometheus metrics (0 = off)")
    web_port: int = Field(6066, ge=0, description="Faust web port of the worker (0 = off)")
    review_page_port: int = Field(8080, ge=0, description="HTTP port of the analysts' review page")
    state_ttl_s: int = Field(int(45 * DAY_S), ge=1, description="expiry of online feature state keys (s)")
    decision_ttl_s: int = Field(int(14 * DAY_S), ge=1, description="how long decisions are kept for dedup (s)")
    redis_prefix: str = Field("fs", min_length=1, description="prefix of every Redis key fraudstream writes")
    model_poll_s: float = Field(2.0, gt=0, description="how often the model directory is checked (s)")
    log_level: str = Field("INFO", description="log level")
