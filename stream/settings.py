"""Typed settings of the stream worker and of the tools that talk to its topics (replay, demo).

Every field is read from ``FRAUDSTREAM_WORKER_<FIELD NAME IN UPPER CASE>``; the broker and Redis also from the
common ``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL``.  Read once at the edge (:meth:`StreamSettings.from_env`, in
the CLI), then passed in explicitly; constructing the model reads no environment.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from fraudstream.detectors.env_settings import EnvSettings
from fraudstream.detectors.schema import DEFAULT_EVENT_TIME_RANGE, EventTimeRange
from fraudstream.detectors.units import DAY_S
from fraudstream.stream.broker.group_timing import DEFAULT_GROUP_SESSION_TIMEOUT_S
from fraudstream.stream.collector import YOUNG_THRESHOLD
from fraudstream.stream.event_time.rules import (
    DEFAULT_END_GRACE_S,
    DEFAULT_EVENT_TIME_SLACK_S,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_BUFFERED,
    DEFAULT_MAX_FUTURE_SKEW_S,
    EventTimeRules,
)

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
    review_cases_per_day: int = Field(0, ge=0, description="review budget: review cases (one open per card) a UTC "
                                      "day of event time may open; past it a REVIEW of another card becomes ALLOW "
                                      "(0 = no budget)")
    metrics_port: int = Field(9464, ge=0, description="HTTP port of the Prometheus metrics (0 = off)")
    web_port: int = Field(6066, ge=0, description="Faust web port of the worker (0 = off)")
    state_ttl_s: int = Field(int(45 * DAY_S), ge=1, description="expiry of online feature state keys (s)")
    decision_ttl_s: int = Field(int(14 * DAY_S), ge=1, description="how long decisions are kept for dedup (s)")
    redis_prefix: str = Field("fs", min_length=1, description="prefix of every Redis key fraudstream writes")
    model_poll_s: float = Field(2.0, gt=0, description="how often the model directory is checked (s)")
    log_level: str = Field("INFO", description="log level")
    bind_host: str = Field("127.0.0.1", min_length=1,
                           description="address the metrics and web ports listen on (0.0.0.0: every interface)")
    startup_timeout_s: float = Field(60.0, gt=0, description="how long an unreachable broker or Redis is retried "
                                                             "at start, with back-off, before exit code 3 (s)")
    create_missing_topics: bool = Field(False, description="create missing topics even when Redis holds state of "
                                                           "this deployment (the broker lost them)")
    health_interval_s: float = Field(2.0, gt=0, description="pause between two health checks of Redis and the "
                                                            "broker (s)")
    health_timeout_s: float = Field(2.0, gt=0, description="longest wait for one health probe's answer (s)")
    group_session_timeout_s: float = Field(DEFAULT_GROUP_SESSION_TIMEOUT_S, ge=1,
                                           description="time without a heartbeat after which the group drops this "
                                                       "worker (s); some brokers hold a new group's first join for "
                                                       "half of it")
    send_timeout_s: float = Field(30.0, gt=0, description="longest wait for the broker to acknowledge a batch's "
                                                         "decisions before the batch is retried (s)")
    event_time_slack_s: float = Field(DEFAULT_EVENT_TIME_SLACK_S, ge=0,
                                      description="event-time slack of the watermark; older records are late (s)")
    max_future_skew_s: float = Field(DEFAULT_MAX_FUTURE_SKEW_S, gt=0,
                                     description="largest lead of a timestamp over the wall clock (or the stream's "
                                                 "event time) before it is a dead letter (s)")
    idle_partition_timeout_s: float = Field(DEFAULT_IDLE_TIMEOUT_S, gt=0,
                                            description="wall time after which a partition that delivers nothing "
                                                        "stops holding the others back (s)")
    partition_end_grace_s: float = Field(DEFAULT_END_GRACE_S, ge=0,
                                         description="wall time a partition that reached its end still holds the "
                                                     "others back at its latest event time (s)")
    max_held_back_events: int = Field(DEFAULT_MAX_BUFFERED, ge=1,
                                      description="most events held back by the watermark; beyond it the earliest "
                                                  "are released anyway")
    gc_young_threshold: int = Field(YOUNG_THRESHOLD, ge=0,
                                    description="allocations between two young garbage collections once the worker "
                                                "is warm (what is alive then is frozen); 0 = Python's defaults")
    event_time_earliest_s: float = Field(DEFAULT_EVENT_TIME_RANGE.earliest_s,
                                         description="earliest accepted timestamp (epoch s); earlier is invalid")
    event_time_latest_s: float = Field(DEFAULT_EVENT_TIME_RANGE.latest_s,
                                       description="timestamps at or after this (epoch s) are invalid")

    @model_validator(mode="after")
    def _check_event_time_range(self) -> StreamSettings:
        self.event_time_range()  # raises for an empty or non-finite range
        return self

    def event_time_range(self) -> EventTimeRange:
        """The sane range of transaction timestamps; anything outside is an invalid event (dead letter)."""
        return EventTimeRange(self.event_time_earliest_s, self.event_time_latest_s)

    def event_time_rules(self) -> EventTimeRules:
        """The worker's event-time rules: slack, future skew, idle time-out, bound of the held-back buffer, grace
        of a partition at its end."""
        return EventTimeRules(slack_s=self.event_time_slack_s, max_future_skew_s=self.max_future_skew_s,
                              idle_timeout_s=self.idle_partition_timeout_s, max_buffered=self.max_held_back_events,
                              end_grace_s=self.partition_end_grace_s)
