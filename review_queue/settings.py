"""Typed settings of the review service (page, API, case store), from ``FRAUDSTREAM_REVIEW_*`` variables.

Read once at the command-line edge (:meth:`ReviewSettings.from_env`) and passed in explicitly; constructing the
model reads no environment.  The Redis URL, key prefix, broker and labels topic are shared with the worker, so
they also honour the worker's names (``REDIS_URL`` / ``FRAUDSTREAM_WORKER_REDIS_URL``,
``FRAUDSTREAM_WORKER_REDIS_PREFIX``, ``KAFKA_BOOTSTRAP_SERVERS``, ``FRAUDSTREAM_WORKER_LABELS_TOPIC``).
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from fraudstream.detectors.env_settings import EnvSettings
from fraudstream.stream.state.review_scripts import DEFAULT_AGE_DOUBLING_S, DEFAULT_RETENTION_S, DEFAULT_SLA_S

ENV_PREFIX = "FRAUDSTREAM_REVIEW_"
HOUR_S = 3600
DAY_S = 86_400


def _shared(field: str, *names: str) -> AliasChoices:
    return AliasChoices(ENV_PREFIX + field.upper(), *names)


class ReviewSettings(EnvSettings):
    """Settings of ``fraudstream review`` and ``fraudstream users``/``labels`` (times in s)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    redis_url: str = Field("", description="Redis URL of the review queue (also REDIS_URL)",
                           validation_alias=_shared("redis_url", "FRAUDSTREAM_WORKER_REDIS_URL", "REDIS_URL"))
    redis_prefix: str = Field("fs", description="prefix of every Redis key (as the worker's)",
                              validation_alias=_shared("redis_prefix", "FRAUDSTREAM_WORKER_REDIS_PREFIX"))
    kafka_bootstrap_servers: str = Field(
        "", description="broker for verdict labels; empty = labels are only kept in Redis",
        validation_alias=_shared("kafka_bootstrap_servers", "FRAUDSTREAM_WORKER_KAFKA_BOOTSTRAP_SERVERS",
                                 "KAFKA_BOOTSTRAP_SERVERS"))
    labels_topic: str = Field("labels", description="topic verdict labels go to (as the worker's)",
                              validation_alias=_shared("labels_topic", "FRAUDSTREAM_WORKER_LABELS_TOPIC"))
    host: str = Field("127.0.0.1", description="address the page listens on")
    page_port: int = Field(8080, ge=0, le=65535, description="HTTP port of the page")
    sla_s: int = Field(DEFAULT_SLA_S, gt=0, description="a case is overdue this long after its first item (s)")
    lease_s: int = Field(15 * 60, gt=0, description="how long a claimed case stays with its analyst (s)")
    age_doubling_s: int = Field(DEFAULT_AGE_DOUBLING_S, gt=0,
                                description="a case's priority doubles every this long (s)")
    skip_ttl_s: int = Field(HOUR_S, gt=0, description="a skipped case is not offered to that analyst again for (s)")
    retention_s: int = Field(DEFAULT_RETENTION_S, gt=0,
                             description="resolved items, cases, audit and label log kept for (s)")
    block_ttl_s: int = Field(365 * DAY_S, gt=0, description="a block-list entry expires after (s)")
    session_idle_s: int = Field(30 * 60, gt=0, description="a session ends after this long without a request (s)")
    session_max_s: int = Field(12 * HOUR_S, gt=0, description="a session ends this long after login (s)")
    password_time_cost: int = Field(3, ge=1, description="Argon2id passes of the password hash")
    password_memory_kib: int = Field(64 * 1024, ge=8 * 1024, description="Argon2id memory of the password hash (KiB)")
    login_max_failures: int = Field(10, gt=0, description="failed logins per user or address before a lock-out")
    login_window_s: int = Field(15 * 60, gt=0, description="window in which failed logins are counted (s)")
    lockout_s: int = Field(15 * 60, gt=0, description="length of a lock-out (s)")
    metrics_token: str = Field("", description="bearer token that may read /metrics without a session (Prometheus)")
    secure_cookies: bool = Field(False, description="mark cookies Secure (behind HTTPS)")
    page_size: int = Field(50, gt=0, le=500, description="cases per queue page")
    claim_scan: int = Field(64, gt=0, description="best cases looked at by claim-next to pass over skipped ones")
    ingest_every_s: float = Field(1.0, gt=0, description="how often new REVIEW items are moved into cases (s)")
    publish_every_s: float = Field(0.5, gt=0, description="how often verdict labels are sent to the broker (s)")
