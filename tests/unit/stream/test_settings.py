"""Stream settings: environment variables, common names, overrides and clear errors."""

import pytest

from fraudstream.stream.settings import StreamSettings
from fraudstream.stream.topics import topic_names


def test_defaults_without_environment():
    settings = StreamSettings.from_env({})
    assert settings == StreamSettings()
    assert settings.kafka_bootstrap_servers == "" and settings.redis_url == ""


def test_prefixed_variables_are_cast_to_the_field_type():
    settings = StreamSettings.from_env({"FRAUDSTREAM_WORKER_PARTITIONS": "6", "FRAUDSTREAM_WORKER_BATCH_WAIT_S": "0.2",
                                        "FRAUDSTREAM_WORKER_TRANSACTIONS_TOPIC": "tx-test"})
    assert settings.partitions == 6 and isinstance(settings.partitions, int)
    assert settings.batch_wait_s == pytest.approx(0.2)
    assert settings.transactions_topic == "tx-test"


def test_common_names_are_honoured_and_prefixed_ones_win():
    env = {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "REDIS_URL": "redis://r:6379/0"}
    settings = StreamSettings.from_env(env)
    assert settings.kafka_bootstrap_servers == "k:9092" and settings.redis_url == "redis://r:6379/0"
    env["FRAUDSTREAM_WORKER_KAFKA_BOOTSTRAP_SERVERS"] = "other:1"
    assert StreamSettings.from_env(env).kafka_bootstrap_servers == "other:1"


def test_explicit_overrides_beat_the_environment_and_none_is_ignored():
    settings = StreamSettings.from_env({"FRAUDSTREAM_WORKER_LABELS_TOPIC": "env"}, labels_topic="cli", app_id=None)
    assert settings.labels_topic == "cli" and settings.app_id == StreamSettings().app_id
    assert settings.with_overrides(partitions=1, dlq_topic=None).partitions == 1


def test_bad_number_names_the_variable():
    with pytest.raises(ValueError, match="FRAUDSTREAM_WORKER_METRICS_PORT"):
        StreamSettings.from_env({"FRAUDSTREAM_WORKER_METRICS_PORT": "ninety"})


def test_environment_is_read_when_asked_not_at_import(monkeypatch):
    monkeypatch.setenv("FRAUDSTREAM_WORKER_APP_ID", "late")
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6379/0")
    assert StreamSettings.from_env().app_id == "late"
    plain = StreamSettings()
    assert plain.app_id == "fraudstream" and plain.redis_url == "", "constructing read the environment"


def test_describe_lists_every_variable_with_help():
    rows = StreamSettings.describe()
    names = [name for name, _, _ in rows]
    assert "FRAUDSTREAM_WORKER_REDIS_URL (or REDIS_URL)" in names
    assert all(help_text for _, _, help_text in rows)


def test_topic_names_follow_the_settings_and_are_unique():
    settings = StreamSettings(transactions_topic="a", labels_topic="b", decisions_topic="a", dlq_topic="d")
    assert topic_names(settings) == ["a", "b", "d"]


def test_unknown_field_and_out_of_range_value_are_refused():
    with pytest.raises(ValueError, match="FRAUDSTREAM_WORKER_PARTITIONS"):
        StreamSettings.from_env({"FRAUDSTREAM_WORKER_PARTITIONS": "0"})
    with pytest.raises(ValueError, match="partitons"):
        StreamSettings(partitons=3)


def test_the_review_budget_is_off_by_default_and_refuses_a_negative_budget():
    assert StreamSettings.from_env({}).review_cases_per_day == 0
    assert StreamSettings.from_env({"FRAUDSTREAM_WORKER_REVIEW_CASES_PER_DAY": "100"}).review_cases_per_day == 100
    with pytest.raises(ValueError, match="FRAUDSTREAM_WORKER_REVIEW_CASES_PER_DAY"):
        StreamSettings.from_env({"FRAUDSTREAM_WORKER_REVIEW_CASES_PER_DAY": "-1"})
