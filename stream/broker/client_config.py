"""One configuration for every Kafka client of a worker: bootstrap servers, client ids, fetch and produce tuning.

Latency: the consumers use a short broker fetch wait (:data:`CONSUMER_FETCH_MAX_WAIT_MS`; brokers that do not
answer a fetch as soon as data arrives would otherwise add up to the whole wait) and the producer lingers at most
:data:`PRODUCER_LINGER_MS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from fraudstream.stream.broker.group_timing import DEFAULT_GROUP_SESSION_TIMEOUT_S, group_timing
from fraudstream.stream.settings import StreamSettings

#: Producer: longest wait (ms) to fill a produce request: none, a batch's decisions go as one record batch per
#: partition anyway (1 ms cost a batch's delivery 2.1 ms on average at 1,000 tx/s, 0 ms 1.2).
PRODUCER_LINGER_MS = 0
#: Producer: largest produce request per partition (bytes).
PRODUCER_MAX_BATCH_BYTES = 1 << 20
#: Consumer: fetch size per partition (bytes); large enough for a full micro-batch.
CONSUMER_MAX_PARTITION_FETCH_BYTES = 4 << 20
#: Consumer: longest time (ms) the broker may hold a fetch that has no data yet.  Short, because some brokers
#: (e.g. the embedded one) hold it for the whole wait even when records arrive meanwhile.
CONSUMER_FETCH_MAX_WAIT_MS = 2


def bootstrap_list(servers: str) -> list[str]:
    """``host:port[,...]`` as a list; raises ValueError naming the setting when empty."""
    out = [s.strip() for s in servers.split(",") if s.strip()]
    if not out:
        raise ValueError("FRAUDSTREAM_WORKER_KAFKA_BOOTSTRAP_SERVERS (or KAFKA_BOOTSTRAP_SERVERS) is not set")
    return out


@dataclass(frozen=True)
class KafkaClientConfig:
    """How the worker's clients connect.

    bootstrap_servers : broker addresses.
    app_id : consumer group id and prefix of every client id.
    session_timeout_s : the group consumer's session time-out (heartbeats every third of it).
    """

    bootstrap_servers: list[str]
    app_id: str
    session_timeout_s: float = DEFAULT_GROUP_SESSION_TIMEOUT_S

    @classmethod
    def from_settings(cls, settings: StreamSettings) -> KafkaClientConfig:
        return cls(bootstrap_list(settings.kafka_bootstrap_servers), settings.app_id,
                   settings.group_session_timeout_s)

    def group_consumer(self) -> AIOKafkaConsumer:
        """The transactions consumer: member of the group ``app_id``, explicit commits, from the earliest."""
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=self.app_id, client_id=f"{self.app_id}-worker",
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_partition_fetch_bytes=CONSUMER_MAX_PARTITION_FETCH_BYTES, fetch_max_wait_ms=CONSUMER_FETCH_MAX_WAIT_MS,
            **group_timing(self.session_timeout_s),
        )

    def standalone_consumer(self, role: str) -> AIOKafkaConsumer:
        """A consumer outside any group (partitions assigned by hand), e.g. the label feed."""
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=None, enable_auto_commit=False,
            client_id=f"{self.app_id}-{role}", max_partition_fetch_bytes=CONSUMER_MAX_PARTITION_FETCH_BYTES,
            fetch_max_wait_ms=CONSUMER_FETCH_MAX_WAIT_MS,
        )

    def producer(self, role: str) -> AIOKafkaProducer:
        """A producer that waits for every in-sync replica (``acks=all``) and lingers little."""
        return AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, acks="all", linger_ms=PRODUCER_LINGER_MS,
                                max_batch_size=PRODUCER_MAX_BATCH_BYTES, client_id=f"{self.app_id}-{role}")

    def faust_broker_url(self) -> str:
        return ";".join(f"kafka://{server}" for server in self.bootstrap_servers)
