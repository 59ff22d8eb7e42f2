from fraudstream.stream.broker.client_config import KafkaClientConfig
from fraudstream.stream.broker.group_timing import DEFAULT_GROUP_SESSION_TIMEOUT_S, group_timing
from fraudstream.stream.settings import StreamSettings


def test_heartbeats_come_three_times_a_session_and_a_rebalance_waits_one_session():
    assert group_timing(6.0) == {"session_timeout_ms": 6000, "heartbeat_interval_ms": 2000,
                                 "rebalance_timeout_ms": 6000}
    assert group_timing(10.0)["heartbeat_interval_ms"] == 3333


def test_the_workers_session_time_out_reaches_its_kafka_clients():
    assert StreamSettings().group_session_timeout_s == DEFAULT_GROUP_SESSION_TIMEOUT_S
    settings = StreamSettings.from_env({"FRAUDSTREAM_WORKER_GROUP_SESSION_TIMEOUT_S": "7.5",
                                        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"})
    assert KafkaClientConfig.from_settings(settings).session_timeout_s == 7.5
