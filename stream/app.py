"""The worker's Faust app: Faust runs the services (signals, logging, web), fraudstream's services do the work.

Faust's own Kafka consumer is not started: its per-event stream machinery costs about 160 us an event, more than
the whole cascade.  Instead two services of the app run the worker: :class:`~fraudstream.stream.runtime.WorkerRuntime`
(state store, decision sink, label feed, model, metrics, the batch handler) and
:class:`~fraudstream.stream.batch_loop.BatchConsumer` (aiokafka batches released by event time, explicit
commits).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import faust

from fraudstream.stream.batch_loop import BatchConsumer
from fraudstream.stream.broker.client_config import KafkaClientConfig
from fraudstream.stream.metrics import WorkerMetrics
from fraudstream.stream.runtime import WorkerRuntime
from fraudstream.stream.settings import StreamSettings


def create_app(settings: StreamSettings, metrics: WorkerMetrics | None = None) -> faust.App:
    """The worker's Faust app for these settings.

    Parameters
    ----------
    settings : everything configurable (see :class:`StreamSettings`).
    metrics : metrics registry holder (a fresh one by default).
    """
    app = faust.App(
        settings.app_id,
        broker=KafkaClientConfig.from_settings(settings).faust_broker_url(),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or None,
        web_bind=settings.bind_host,
        datadir=str(Path(tempfile.gettempdir()) / f"fraudstream-faust-{settings.app_id}"),
    )
    runtime = WorkerRuntime(settings, metrics=metrics)
    app.boot_strategy = app.BootStrategy(app, enable_kafka_consumer=False)
    # instances (Faust's annotation says classes; instances work and are started after the app's own services)
    app.service(runtime)  # type: ignore[arg-type]
    app.service(BatchConsumer(runtime))  # type: ignore[arg-type]
    return app
