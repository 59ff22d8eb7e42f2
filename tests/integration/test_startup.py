"""``fraudstream worker`` start-up against the real broker and Redis: one clear line and an exit code when it
cannot start (3 unreachable, 4 Redis came back empty, 5 topics missing), never a traceback; the documented
recovery ``fraudstream state accept-empty`` lets it start again."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from fraudstream.stream.embedded import free_port
from fraudstream.stream.startup import EXIT_TOPICS, EXIT_UNREACHABLE, StartupError, prepare
from fraudstream.stream.state.epoch import EXIT_STATE_LOST, StateEpoch, create_epoch
from fraudstream.stream.state.keys import Keyspace

pytestmark = pytest.mark.integration

#: Longest run (s) of one start-up attempt (the worker imports, retries for STARTUP_TIMEOUT_S, exits).
RUN_TIMEOUT_S = 90.0
STARTUP_TIMEOUT_S = 3.0
#: A password in a Redis URL (it must never reach a log line).
SECRET = "s3cret-Pa55word"


def run_cli(args: list[str], settings, **env_overrides: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        env[f"FRAUDSTREAM_WORKER_{name.upper()}"] = str(value)
    env.update(FRAUDSTREAM_WORKER_STARTUP_TIMEOUT_S=str(STARTUP_TIMEOUT_S), FRAUDSTREAM_WORKER_WEB_PORT="0")
    env.update(env_overrides)
    return subprocess.run([sys.executable, "-m", "fraudstream.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)


def assert_one_clear_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    text = result.stdout + result.stderr
    assert result.returncode == code, f"exit {result.returncode}, expected {code}:\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, text[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_an_unreachable_broker_or_redis_is_retried_then_named_with_its_setting(tiny_bundle, unique_topics, redis_url):
    nothing = f"127.0.0.1:{free_port()}"
    settings = unique_topics.settings(redis_url=redis_url, model_dir=str(tiny_bundle.root))
    started = time.monotonic()
    result = run_cli(["worker"], settings.with_overrides(kafka_bootstrap_servers=nothing))
    assert_one_clear_error(result, EXIT_UNREACHABLE, "KAFKA_BOOTSTRAP_SERVERS", nothing, f"{STARTUP_TIMEOUT_S:g} s")
    assert "retrying with back-off" in result.stderr  # it did retry before giving up
    assert time.monotonic() - started < RUN_TIMEOUT_S

    port = free_port()
    no_redis = f"redis://fraud:{SECRET}@127.0.0.1:{port}/0"
    result = run_cli(["worker"], settings.with_overrides(redis_url=no_redis))
    assert_one_clear_error(result, EXIT_UNREACHABLE, "REDIS_URL", f"redis://fraud:***@127.0.0.1:{port}/0")
    assert SECRET not in result.stdout + result.stderr  # the password is never printed


def test_a_missing_decisions_topic_of_a_running_deployment_stops_the_worker_and_is_not_created(
        tiny_bundle, unique_topics, redis_url):
    settings = unique_topics.settings(redis_url=redis_url, model_dir=str(tiny_bundle.root))
    epoch = asyncio.run(prepare(settings))  # the deployment's first start: the epoch is written
    assert epoch.transactions_partitions == settings.partitions
    gone = settings.with_overrides(decisions_topic=f"{unique_topics.prefix}-decisions-gone")
    result = run_cli(["worker"], gone)
    assert_one_clear_error(result, EXIT_TOPICS, gone.decisions_topic, "CREATE_MISSING_TOPICS")
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=unique_topics.bootstrap)
    try:
        assert gone.decisions_topic not in admin.list_topics(), "the missing topic was created behind our back"
    finally:
        admin.close()


def test_redis_that_came_back_empty_is_refused_until_the_operator_accepts_it(tiny_bundle, unique_topics, redis_url):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    settings = unique_topics.settings(redis_url=redis_url, model_dir=str(tiny_bundle.root))
    producer = KafkaProducer(bootstrap_servers=unique_topics.bootstrap)
    producer.send(settings.transactions_topic, b"{}", partition=0).get(timeout=30)
    producer.close()

    group = KafkaConsumer(bootstrap_servers=unique_topics.bootstrap, group_id=settings.app_id,
                          enable_auto_commit=False)  # what a worker that ran before leaves on the broker
    try:
        tp = TopicPartition(settings.transactions_topic, 0)
        group.assign([tp])
        group.commit({tp: OffsetAndMetadata(1, "", -1)})
    finally:
        group.close()
    result = run_cli(["worker"], settings)
    assert_one_clear_error(result, EXIT_STATE_LOST, "state lost", "accept-empty", settings.app_id)

    result = run_cli(["state", "accept-empty", "--yes"], settings)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "empty state" in result.stdout
    epoch = asyncio.run(prepare(settings))  # now the worker starts
    assert epoch.transactions_partitions == settings.partitions
    result = run_cli(["state", "accept-empty", "--yes"], settings)
    assert result.returncode != 0 and "nothing to accept" in result.stderr


def test_a_partition_count_other_than_the_epoch_recorded_is_refused(unique_topics, redis_url, tiny_bundle):
    import redis.asyncio as aioredis

    settings = unique_topics.settings(redis_url=redis_url, model_dir=str(tiny_bundle.root))
    client = aioredis.from_url(redis_url)

    async def record_other_count():
        try:
            await create_epoch(client, Keyspace(settings.redis_prefix),
                               StateEpoch.new(settings.partitions + 3, settings.partitions))
        finally:
            await client.aclose()

    asyncio.run(record_other_count())
    with pytest.raises(StartupError) as caught:
        asyncio.run(prepare(settings))
    assert caught.value.code == EXIT_TOPICS
    assert f"had {settings.partitions + 3}" in str(caught.value)
