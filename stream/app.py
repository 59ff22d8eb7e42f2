"""The stream worker as a Faust app: what runs a micro-batch, and the two ways of feeding it batches.

:class:`WorkerRuntime` (a service of the app) owns the Redis client, the decision producer, the model watcher and
the metrics; :meth:`WorkerRuntime.handle` runs one batch to the end: pipeline, produce decisions and dead
letters, await their delivery, retry the same batch on an unexpected error.  Offsets are committed only after
``handle`` returned.

Engines (``FRAUDSTREAM_ENGINE``):

``direct`` (default)
    :class:`BatchConsumer`, a service of the app, consumes transactions with an aiokafka consumer group into
    per-partition buffers and releases as a batch (up to ``batch_size``) what the event-time watermark allows
    (:mod:`~fraudstream.stream.alignment`: nothing more than a small slack later than the earliest pending record
    of any transaction partition, this worker's or another's), commits each batch's offsets explicitly after
    delivery, publishes its partitions' progress in Redis for the other workers, and on a rebalance lets the
    batch in flight finish and commit before partitions are given up.
    Faust's own consumer is not started (Faust still runs the worker: services, signals, logging, web).
``faust``
    a Faust agent with ``stream.take_events(batch_size, within=batch_wait_s)`` on raw bytes of the transactions
    topic; Faust acks a batch after ``handle`` returned and commits acked offsets on its own interval.  Slower
    (Faust's per-event cost), and without event-time alignment: fit for real-time traffic only, not for
    catching up a backlog.

Labels are not part of the group in either engine: every worker reads all label partitions itself
(:class:`~fraudstream.stream.label_feed.LabelFeed`) and, before each batch of transactions, catches up with
the labels topic's end offsets, so a transaction is always scored after every label sent before it.

Latency: the consumers use a short broker fetch wait (:data:`CONSUMER_FETCH_MAX_WAIT_MS`; brokers that do not
answer a fetch as soon as data arrives would otherwise add up to the whole wait), the producer lingers at most
:data:`PRODUCER_LINGER_MS`, a batch costs two Redis round trips and one end-offsets request, and the model is
warmed up before the first batch.
"""

from __future__ import annotations

import asyncio
import logging
import math
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.partitioner import DefaultPartitioner
from mode import Service
from redis.exceptions import RedisError

from fraudstream.stream.alignment import (
    DEFAULT_EVENT_TIME_SLACK_S, EventTimeAligner, PartitionProgress, decode_event, foreign_floor, progress_key,
)
from fraudstream.stream.label_feed import LabelFeed
from fraudstream.stream.metrics import WorkerMetrics
from fraudstream.stream.model_watch import ActiveModel, ModelWatcher
from fraudstream.stream.pipeline import BatchOutcome, BatchPipeline, RawEvent
from fraudstream.stream.settings import StreamSettings

log = logging.getLogger(__name__)

ENGINE_DIRECT = "direct"
ENGINE_FAUST = "faust"
ENGINES = (ENGINE_DIRECT, ENGINE_FAUST)
MS_PER_S = 1000.0
#: First and longest pause (s) before a failed batch is tried again.
RETRY_BACKOFF_FIRST_S = 0.1
RETRY_BACKOFF_MAX_S = 5.0
#: Producer: longest wait (ms) to fill a produce request; small, decisions are latency-bound.
PRODUCER_LINGER_MS = 1
#: Producer: largest produce request per partition (bytes).
PRODUCER_MAX_BATCH_BYTES = 1 << 20
#: Consumer: fetch size per partition (bytes); large enough for a full micro-batch.
CONSUMER_MAX_PARTITION_FETCH_BYTES = 4 << 20
#: Consumer: longest time (ms) the broker may hold a fetch that has no data yet.  Short, because some brokers
#: (e.g. the embedded one) hold it for the whole wait even when records arrive meanwhile.
CONSUMER_FETCH_MAX_WAIT_MS = 2
#: Start of the log line written after each assignment of transaction partitions (tests and tools wait for it).
PARTITIONS_ASSIGNED_LOG = "partitions assigned:"
#: When a fetch returns a full batch (the worker is behind), the next batch may be this many times larger: fixed
#: per-batch costs (round trips, commits) are then shared by more events.
LAGGING_BATCH_FACTOR = 4
#: Warn when partitions with backlog return no records (and hold the others back) for this long (s).
HOLD_WARNING_S = 30.0
#: Expiry (s) of a partition's published progress, so entries of workers long gone do not linger (a partition
#: without an entry and with records holds the others back until its owner publishes).
PROGRESS_TTL_S = 60.0
#: Unchanged progress is written again this often (s), before it expires.
PROGRESS_REFRESH_S = 10.0


def bootstrap_list(settings: StreamSettings) -> list[str]:
    servers = [s.strip() for s in settings.kafka_bootstrap_servers.split(",") if s.strip()]
    if not servers:
        raise ValueError("FRAUDSTREAM_KAFKA_BOOTSTRAP_SERVERS (or KAFKA_BOOTSTRAP_SERVERS) is not set")
    return servers


class WorkerRuntime(Service):
    """Redis, producer, model and metrics of one worker, and the batch handler both engines use."""

    def __init__(self, settings: StreamSettings, metrics: WorkerMetrics | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics if metrics is not None else WorkerMetrics()
        self.watcher = ModelWatcher(settings.model_dir, settings.model_poll_s, on_swap=self._on_model_swap,
                                    on_failure=lambda exc: self.metrics.model_reloads.labels(outcome="failed").inc())
        self.redis: Any = None
        self.producer: AIOKafkaProducer | None = None
        self.pipeline: BatchPipeline | None = None
        self.labels: LabelFeed | None = None
        self.ready = asyncio.Event()
        self._partitioner = DefaultPartitioner()

    def _on_model_swap(self, model: ActiveModel) -> None:
        self.metrics.model_reloads.labels(outcome="loaded").inc()
        self.metrics.set_model_version(model.version)

    async def on_start(self) -> None:
        import redis.asyncio as aioredis

        from fraudstream.stream.topics import ensure_topics, topic_names

        s = self.settings
        if not s.redis_url:
            raise ValueError("FRAUDSTREAM_REDIS_URL (or REDIS_URL) is not set")
        await asyncio.to_thread(self.watcher.load_now)
        await asyncio.to_thread(self.watcher.current.warm_up)  # type: ignore[union-attr]
        await asyncio.to_thread(ensure_topics, ",".join(bootstrap_list(s)), topic_names(s), s.partitions)
        self.metrics.serve(s.metrics_port)
        self.redis = aioredis.from_url(s.redis_url, decode_responses=False)
        await self.redis.ping()
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap_list(s), acks="all",
                                         linger_ms=PRODUCER_LINGER_MS, max_batch_size=PRODUCER_MAX_BATCH_BYTES,
                                         client_id=f"{s.app_id}-decisions")
        await self.producer.start()
        for topic in (s.decisions_topic, s.dlq_topic):
            await self.producer.partitions_for(topic)  # metadata now, not on the first batch
        self.pipeline = BatchPipeline(s, self.redis, lambda: self.watcher.current, self.metrics)
        self.labels = LabelFeed(lambda: AIOKafkaConsumer(
            bootstrap_servers=bootstrap_list(s), group_id=None, enable_auto_commit=False,
            client_id=f"{s.app_id}-labels", max_partition_fetch_bytes=CONSUMER_MAX_PARTITION_FETCH_BYTES,
            fetch_max_wait_ms=CONSUMER_FETCH_MAX_WAIT_MS), s.labels_topic, self.pipeline.applied_offsets)
        await self.labels.start()
        self.ready.set()
        log.info("worker runtime ready: model %s, redis %s, broker %s", self.watcher.current.version,
                 s.redis_url, s.kafka_bootstrap_servers)

    @Service.task
    async def _watch_model(self) -> None:
        await self.ready.wait()
        await self.watcher.run()

    async def on_stop(self) -> None:
        if self.labels is not None:
            await self.labels.stop()
        if self.producer is not None:
            await self.producer.stop()
        if self.redis is not None:
            await self.redis.aclose()

    async def handle(self, events: Sequence[RawEvent]) -> bool:
        """Run one batch of transactions until its decisions and dead letters are delivered.

        Labels up to the labels topic's end offsets (asked when the batch starts) are applied first.  Returns
        False if stopped before the batch was delivered.
        """
        await self.ready.wait()
        started = time.perf_counter()
        backoff = RETRY_BACKOFF_FIRST_S
        labels: list[RawEvent] = []
        while True:
            try:
                labels += await self.labels.catch_up()  # type: ignore[union-attr]
                outcome = await self.pipeline.process(labels + list(events))  # type: ignore[union-attr]
                await self._produce(outcome)
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                self.metrics.batch_errors.inc()
                log.exception("batch of %d events failed; retrying in %.1f s", len(events), backoff)
                if self.should_stop:
                    return False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_BACKOFF_MAX_S)
        delivered_at = time.time()
        m = self.metrics
        m.latency.observe_many(delivered_at - outcome.broker_ts_s)
        m.batch_size.observe(len(events))
        m.batch_seconds.observe(time.perf_counter() - started)
        return True

    async def _produce(self, outcome: BatchOutcome) -> None:
        """Send the batch's decisions and dead letters in per-partition record batches; wait for delivery."""
        s = self.settings
        futures = await self._send_all(s.decisions_topic, outcome.decisions)
        futures += await self._send_all(s.dlq_topic, outcome.dlq)
        if futures:
            await asyncio.gather(*futures)

    async def _send_all(self, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> list[asyncio.Future]:
        """Queue messages as whole record batches (partition of a key as ``send`` would choose it)."""
        producer = self.producer
        assert producer is not None
        if not messages:
            return []
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: dict[int, list[tuple[bytes | None, bytes]]] = defaultdict(list)
        for key, value in messages:
            by_partition[self._partitioner(key, partitions, partitions)].append((key, value))
        futures = []
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"a message of {len(value)} bytes does not fit a record batch of {topic}")
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures


class _FinishBatchOnRevoke(ConsumerRebalanceListener):
    """Lets the batch in flight finish (and commit) before partitions are handed to another worker."""

    def __init__(self, consumer_service: "BatchConsumer") -> None:
        self.service = consumer_service

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.service.batch_lock:
            self.service.rebalances += 1
            for tp in revoked:
                self.service.forget_partition(tp)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.service.rebalances += 1
        log.info("%s %s", PARTITIONS_ASSIGNED_LOG, sorted(f"{tp.topic}/{tp.partition}" for tp in assigned))


class BatchConsumer(Service):
    """The ``direct`` engine: aiokafka group consumer, micro-batches released by event time, explicit commits."""

    def __init__(self, runtime: WorkerRuntime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime
        self.settings = runtime.settings
        self.consumer: AIOKafkaConsumer | None = None
        self.batch_lock = asyncio.Lock()
        self._committed: dict[TopicPartition, int] = {}
        self.aligner: EventTimeAligner[TopicPartition, Any] = EventTimeAligner(DEFAULT_EVENT_TIME_SLACK_S)
        self._published: dict[str, bytes] = {}  # progress key -> value last written
        self._published_at = -math.inf  # monotonic time (s) of the last full refresh
        #: revocations and assignments so far; a round that saw one start in the middle releases nothing.
        self.rebalances = 0

    def forget_partition(self, tp: TopicPartition) -> None:
        self._committed.pop(tp, None)
        self.aligner.forget(tp)
        self._published.pop(progress_key(self.settings.redis_prefix, tp.topic, tp.partition), None)
        try:
            self.runtime.metrics.consumer_lag.remove(tp.topic, str(tp.partition))
        except KeyError:
            pass

    async def on_start(self) -> None:
        await self.runtime.ready.wait()
        s = self.settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_list(s), group_id=s.app_id, client_id=f"{s.app_id}-worker",
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_partition_fetch_bytes=CONSUMER_MAX_PARTITION_FETCH_BYTES, fetch_max_wait_ms=CONSUMER_FETCH_MAX_WAIT_MS,
        )
        self.consumer.subscribe([s.transactions_topic], listener=_FinishBatchOnRevoke(self))
        await self.consumer.start()

    async def on_stop(self) -> None:
        if self.consumer is not None:
            async with self.batch_lock:
                await self.consumer.stop()

    @Service.task
    async def _consume(self) -> None:
        s = self.settings
        timeout_ms = max(1, int(s.batch_wait_s * MS_PER_S))
        held_since: float | None = None
        wait = True
        while not self.should_stop:
            consumer = self.consumer
            if consumer is None:
                await asyncio.sleep(s.batch_wait_s)
                continue
            await self._fetch(consumer, timeout_ms if wait else 0)
            rebalances = self.rebalances
            positions = await self._positions(consumer)
            floors = await self._foreign_floors(consumer)
            async with self.batch_lock:
                if rebalances != self.rebalances:  # positions and floors may describe the old assignment
                    wait = False
                    continue
                assigned = consumer.assignment()
                self.aligner.retain(assigned)
                at_end = {tp: highwater is not None and position is not None and position >= highwater
                          for tp, (position, highwater) in positions.items() if tp in assigned}
                limit = s.batch_size * LAGGING_BATCH_FACTOR if self.aligner.total_buffered > s.batch_size \
                    else s.batch_size
                released = self.aligner.take(at_end, limit, floors)
                # wait in the next fetch unless more can be released at once
                starving = self.aligner.starving(at_end)
                wait = not released or bool(starving) or not self.aligner.total_buffered
                held_since = self._note_hold(starving, held_since)
                if released:
                    events = [event for records in released.values() for event in records]
                    if not await self.runtime.handle(events):
                        return
                    await self._commit({tp: records[-1].offset + 1 for tp, records in released.items()})
                await self._publish_progress(positions, at_end)
            await self._update_lag()

    async def _fetch(self, consumer: AIOKafkaConsumer, timeout_ms: int) -> None:
        """One ``getmany`` into the aligner's buffers, for the partitions whose buffer is not full."""
        cap = self.settings.batch_size * LAGGING_BATCH_FACTOR
        assigned = consumer.assignment()
        fetchable = [tp for tp in assigned if self.aligner.buffered(tp) < cap]
        if not fetchable:
            await asyncio.sleep(timeout_ms / MS_PER_S)  # held back by another worker's partitions
            return
        if len(fetchable) == len(assigned):
            fetchable = []  # getmany() without partitions: every assigned one
        fetched = await consumer.getmany(*fetchable, timeout_ms=timeout_ms, max_records=cap)
        assigned = consumer.assignment()
        for tp, records in fetched.items():
            if tp in assigned and records:
                events, times = [], []
                for r in records:  # each transaction is decoded once, here: the pipeline reuses it
                    decoded, event_time = decode_event(r.value)
                    events.append(RawEvent(r.topic, r.partition, r.offset, r.timestamp, r.value, r.key, decoded))
                    times.append(event_time)
                self.aligner.add(tp, events, times)

    @staticmethod
    async def _positions(consumer: AIOKafkaConsumer) -> dict[TopicPartition, tuple[int | None, int | None]]:
        """Per assigned partition: (position: next offset to fetch, highwater: broker's end at the last fetch).

        Either is None when not known yet (the partition was not fetched since it was assigned).
        """
        out: dict[TopicPartition, tuple[int | None, int | None]] = {}
        for tp in consumer.assignment():
            if tp not in consumer.assignment():  # revoked while an earlier position was awaited
                continue
            highwater = consumer.highwater(tp)
            if highwater is None:
                out[tp] = (None, None)
                continue
            try:
                out[tp] = (await consumer.position(tp), highwater)
            except IllegalStateError:  # revoked meanwhile
                continue
        return out

    async def _foreign_floors(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, float]:
        """Lower bounds of the next pending event time of the transaction partitions other workers own.

        End offsets are asked before the owners' published progress is read (see ``alignment.foreign_floor``).
        On a broker or Redis error every such partition holds this worker back for one round.
        """
        s = self.settings
        topic = s.transactions_topic
        assigned = consumer.assignment()
        others = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
                  if TopicPartition(topic, p) not in assigned]
        if not others:
            return {}
        try:
            ends = await consumer.end_offsets(others)
            raws = await self.runtime.redis.mget([progress_key(s.redis_prefix, topic, tp.partition)
                                                  for tp in others])
        except (KafkaError, RedisError, OSError, TimeoutError) as exc:  # be conservative this round
            log.warning("event-time alignment: progress of partitions %s not read (%r); holding back",
                        [tp.partition for tp in others], exc)
            return {tp: -math.inf for tp in others}
        floors = {}
        for tp, raw in zip(others, raws):
            floor = foreign_floor(PartitionProgress.decode(raw), ends.get(tp, 0))
            if floor is not None:
                floors[tp] = floor
        return floors

    async def _publish_progress(self, positions: dict[TopicPartition, tuple[int | None, int | None]],
                                at_end: dict[TopicPartition, bool]) -> None:
        """Publish how far each assigned partition is processed, for the workers that own the other partitions.

        Written after the batch's state is in Redis; unchanged values are refreshed every
        :data:`PROGRESS_REFRESH_S`.
        """
        s = self.settings
        now = time.monotonic()
        refresh = now - self._published_at > PROGRESS_REFRESH_S
        changed: dict[str, bytes] = {}
        for tp in at_end:
            first = self.aligner.first(tp)
            next_offset = first.offset if first is not None else positions[tp][0]
            if next_offset is None:
                continue
            key = progress_key(s.redis_prefix, tp.topic, tp.partition)
            value = PartitionProgress(next_offset, self.aligner.head(tp), self.aligner.released_to(tp)).encode()
            if refresh or self._published.get(key) != value:
                changed[key] = value
        if not changed:
            return
        try:
            pipe = self.runtime.redis.pipeline(transaction=False)
            for key, value in changed.items():
                pipe.set(key, value, px=int(PROGRESS_TTL_S * MS_PER_S))
            await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:  # the others keep their older (lower) view
            log.warning("event-time alignment: progress not published (%r)", exc)
            return
        self._published.update(changed)
        if refresh:
            self._published_at = now

    def _note_hold(self, starving: list[TopicPartition], held_since: float | None) -> float | None:
        """Warn once when partitions with backlog but no fetched records hold the others back for long."""
        if not starving:
            return None
        now = time.monotonic()
        if held_since is None:
            return now
        if now - held_since > HOLD_WARNING_S:
            log.warning("event-time alignment: partitions %s have backlog but returned no records for %.0f s; "
                        "the other partitions wait for them", sorted(f"{tp.topic}/{tp.partition}" for tp in starving),
                        now - held_since)
            return now
        return held_since

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self.consumer.commit(offsets)  # type: ignore[union-attr]
            self._committed.update(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # the group rebalanced meanwhile: the new owner re-reads these events and answers them from the
            # stored decisions, so nothing is lost or decided twice.
            log.warning("offsets not committed (%r); the partitions' new owner will re-deliver", exc)

    async def _update_lag(self) -> None:
        consumer = self.consumer
        if consumer is None:
            return
        labels = self.runtime.labels
        if labels is not None:
            for tp, lag in labels.lag().items():
                self.runtime.metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)
        for tp in consumer.assignment():
            if tp not in consumer.assignment():  # revoked while an earlier partition's offset was awaited
                continue
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            done = self._committed.get(tp)
            if done is None:
                try:
                    done = await consumer.committed(tp)
                except KafkaError:
                    continue
                if done is None:
                    continue
                self._committed[tp] = done
            self.runtime.metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                max(0, highwater - done))


def faust_broker_url(settings: StreamSettings) -> str:
    return ";".join(f"kafka://{server}" for server in bootstrap_list(settings))


def create_app(settings: StreamSettings, engine: str | None = None, metrics: WorkerMetrics | None = None
               ) -> faust.App:
    """The worker's Faust app for these settings.

    Parameters
    ----------
    settings : everything configurable (see :class:`StreamSettings`).
    engine : ``direct`` or ``faust`` (default: ``settings.engine``).
    metrics : metrics registry holder (a fresh one by default).
    """
    engine = engine or getattr(settings, "engine", ENGINE_DIRECT)
    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {ENGINES}, got {engine!r}")
    app = faust.App(
        settings.app_id,
        broker=faust_broker_url(settings),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or None,
        web_bind="127.0.0.1",
        datadir=str(Path(tempfile.gettempdir()) / f"fraudstream-faust-{settings.app_id}"),
    )
    runtime = WorkerRuntime(settings, metrics=metrics)
    app.fraudstream_runtime = runtime  # type: ignore[attr-defined]
    app.service(runtime)  # type: ignore[arg-type]  # an instance: Faust starts it after the app's own services
    if engine == ENGINE_DIRECT:
        app.boot_strategy = app.BootStrategy(app, enable_kafka_consumer=False)
        app.service(BatchConsumer(runtime))  # type: ignore[arg-type]
    else:
        _add_faust_agent(app, runtime, settings)
    return app


def _add_faust_agent(app: faust.App, runtime: WorkerRuntime, settings: StreamSettings) -> None:
    topics = app.topic(settings.transactions_topic, value_type=bytes, key_type=bytes)

    @app.agent(topics, name="fraudstream-batches")
    async def score_batches(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_wait_s):
            raw = [RawEvent(e.message.topic, e.message.partition, e.message.offset,
                            int(round(e.message.timestamp * MS_PER_S)), e.message.value, e.message.key)
                   for e in events]
            await runtime.handle(raw)

