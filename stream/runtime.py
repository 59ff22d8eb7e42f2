"""What runs a micro-batch: the worker's state store, decision sink, label feed, model and metrics, wired.

:class:`WorkerRuntime` (a service of the Faust app) opens the state store (Redis), the decision sink (producer),
the label feed and the model watcher, and :meth:`WorkerRuntime.handle` runs one batch to the end: labels caught
up, the worker core (:class:`~fraudstream.stream.core.batch.BatchPipeline`), decisions and dead letters produced
and delivered; an unexpected error retries the same batch.  The caller commits offsets only after ``handle``
returned.

Labels are not part of the consumer group: every worker reads all label partitions itself
(:class:`~fraudstream.stream.broker.label_feed.LabelFeed`) and, before each batch of transactions, catches up with
the labels topic's end offsets, so a transaction is always scored after every label sent before it.

Latency: a batch costs two state-store round trips and one end-offsets request, and the model is warmed up
before the first batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
from aiokafka.errors import KafkaError
from mode import Service
from redis.exceptions import RedisError

from fraudstream.detectors.cascade.review_budget import REASON_REVIEW_BUDGET
from fraudstream.detectors.drift import reference_of_manifest
from fraudstream.detectors.env_settings import redact_url
from fraudstream.detectors.features.definition import DAY_S
from fraudstream.stream.broker.client_config import KafkaClientConfig
from fraudstream.stream.broker.label_feed import LabelFeed
from fraudstream.stream.broker.sink import DecisionSink
from fraudstream.stream.collector import tune_collector
from fraudstream.stream.core.batch import BatchOutcome, BatchPipeline, counted_outcome
from fraudstream.stream.core.parse import REASON_TOO_EARLY
from fraudstream.stream.metrics import WorkerMetrics
from fraudstream.stream.model_watch import ActiveModel, ModelWatcher
from fraudstream.stream.settings import StreamSettings
from fraudstream.stream.startup import request_exit
from fraudstream.stream.state.base import StateStoreError
from fraudstream.stream.state.epoch import EXIT_STATE_LOST, StateLostError, lost_message, read_epoch
from fraudstream.stream.state.redis_store import RedisStateStore
from fraudstream.stream.types import Message, RawEvent

log = logging.getLogger(__name__)

#: A batch of more than this many times ``batch_size`` transactions (a worker behind releases up to twice as many,
#: see the batch loop) is decided in chunks of that size, each chunk's state write running in Redis while the next
#: chunk is decided (``BatchPipeline(chunk_size=...)``).  Smaller chunks write a history once per chunk it is in.
CHUNK_BATCHES = 4
#: First and longest pause (s) before a failed batch is tried again.
RETRY_BACKOFF_FIRST_S = 0.1
RETRY_BACKOFF_MAX_S = 5.0
#: Failed attempts of one batch that are logged (besides the first), then every this many.
RETRY_LOG_AT = (2, 5)
RETRY_LOG_EVERY = 20
#: Errors of the state store and broker: a retry is expected to succeed once they are back.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (RedisError, KafkaError, StateStoreError, OSError,
                                                           TimeoutError)


class WorkerRuntime(Service):
    """State store, decision sink, label feed, model and metrics of one worker, and the batch handler."""

    def __init__(self, settings: StreamSettings, metrics: WorkerMetrics | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics if metrics is not None else WorkerMetrics()
        self.watcher = ModelWatcher(settings.model_dir, settings.model_poll_s, on_swap=self._on_model_swap,
                                    on_failure=lambda exc: self.metrics.model_reloads.labels(outcome="failed").inc())
        self.kafka: KafkaClientConfig | None = None
        self._store: RedisStateStore | None = None
        self._sink: DecisionSink | None = None
        self._pipeline: BatchPipeline | None = None
        self.labels: LabelFeed | None = None
        self.ready = asyncio.Event()
        #: UTC event days whose spent review budget was logged.
        self._budget_spent_days: set[int] = set()

    @property
    def store(self) -> RedisStateStore:
        """The state store (once started)."""
        if self._store is None:
            raise RuntimeError("the worker runtime is not started")
        return self._store

    def _on_model_swap(self, model: ActiveModel) -> None:
        self.metrics.model_reloads.labels(outcome="loaded").inc()
        self.metrics.set_model_version(model.version, reference_of_manifest(model.bundle.manifest))

    async def on_start(self) -> None:
        s = self.settings
        if not s.redis_url:
            raise ValueError("FRAUDSTREAM_WORKER_REDIS_URL (or REDIS_URL) is not set")
        self.kafka = kafka = KafkaClientConfig.from_settings(s)
        model = await asyncio.to_thread(self.watcher.load_now)
        await asyncio.to_thread(model.warm_up)
        self.metrics.review_budget.set(s.review_cases_per_day)
        self.metrics.serve(s.metrics_port, s.bind_host)
        self._store = store = RedisStateStore.from_url(s.redis_url, s.redis_prefix, s.labels_topic, s.state_ttl_s,
                                                       s.decision_ttl_s)
        await store.ping()
        store.epoch = await read_epoch(store.redis, store.keys)
        await store.redis.set(store.keys.review_budget, str(s.review_cases_per_day))  # shown on the review page
        if store.epoch is None:  # prepare() wrote or found it moments ago: Redis was emptied since
            request_exit(EXIT_STATE_LOST, lost_message(store.keys, "the state epoch vanished during start-up"))
            return
        self._sink = DecisionSink(kafka.producer("decisions"), [s.decisions_topic, s.dlq_topic])
        await self._sink.start()
        self._pipeline = BatchPipeline(store, lambda: self.watcher.current, s.transactions_topic, s.labels_topic,
                                       on_conflict=self.metrics.state_conflicts.inc,
                                       time_range=s.event_time_range(),
                                       chunk_size=s.batch_size * CHUNK_BATCHES,
                                       review_cases_per_day=s.review_cases_per_day)
        self.labels = LabelFeed(lambda: kafka.standalone_consumer("labels"), s.labels_topic, store.label_offsets)
        await self.labels.start()
        self.metrics.last_batch_timestamp.set(time.time())  # a worker that never delivers a batch shows as stale
        frozen, young = tune_collector(s.gc_young_threshold)
        log.debug("garbage collector: %d objects frozen, young threshold %d", frozen, young)
        self.ready.set()
        log.info("worker runtime ready: model %s, redis %s, broker %s", model.version, redact_url(s.redis_url),
                 s.kafka_bootstrap_servers)

    @Service.task
    async def _watch_model(self) -> None:
        await self.ready.wait()
        await self.watcher.run()

    async def on_stop(self) -> None:
        if self.labels is not None:
            await self.labels.stop()
        if self._sink is not None:
            await self._sink.stop()
        if self._store is not None:
            await self._store.close()

    async def handle(self, events: Sequence[RawEvent], too_early: Sequence[Message] = (),
                     while_writing: Callable[[], Awaitable[None]] | None = None) -> bool:
        """Run one batch of transactions until its decisions and dead letters are delivered.

        Labels up to the labels topic's end offsets (asked when the batch starts) are applied first.
        ``too_early`` are dead letters of transactions the event-time rules refused (sent with the batch's own).
        ``while_writing`` is awaited at most once, while Redis runs the batch's state write (see
        :meth:`BatchPipeline.process <fraudstream.stream.core.batch.BatchPipeline.process>`).
        Returns False if stopped before the batch was delivered.
        """
        await self.ready.wait()
        assert self.labels is not None and self._pipeline is not None and self._sink is not None
        started = time.perf_counter()
        backoff = RETRY_BACKOFF_FIRST_S
        labels: list[RawEvent] = []
        first: BatchOutcome | None = None  # the attempt that wrote the batch's state (retries see duplicates)
        written: list[BatchOutcome] = []  # chunks failed attempts wrote before it
        failures = 0
        while True:
            try:
                labels += await self.labels.catch_up()
                meanwhile, while_writing = while_writing, None  # the first attempt only
                outcome = await self._pipeline.process(labels + list(events), meanwhile)
                if first is None:
                    first = outcome
                await asyncio.wait_for(
                    self._sink.send([(self.settings.decisions_topic, outcome.decisions),
                                     (self.settings.dlq_topic, list(outcome.dlq) + list(too_early))]),
                    self.settings.send_timeout_s)
                break
            except asyncio.CancelledError:
                raise
            except StateLostError as exc:  # nothing of the batch was written or sent: stop, loudly
                request_exit(EXIT_STATE_LOST, str(exc))
                return False
            except Exception as exc:
                taken = self._pipeline.take_written()  # always taken: none may be left for the next batch
                if first is None:
                    written += taken
                self.metrics.batch_errors.inc()
                failures += 1
                self._log_failure(exc, failures, len(events), backoff)
                if self.should_stop:
                    return False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_BACKOFF_MAX_S)
        if failures:
            log.info("batch of %d events delivered after %d failed attempts", len(events), failures)
        m = self.metrics
        m.count_outcome(counted_outcome(first, written))  # counted once delivered, from the attempts that decided
        if first.reviews_over_budget:
            self._log_budget_spent(first)
        if too_early:
            m.dlq.labels(reason=REASON_TOO_EARLY).inc(len(too_early))
        delivered_at = time.time()
        m.last_batch_timestamp.set(delivered_at)
        m.latency.observe_many(delivered_at - outcome.broker_ts_s)
        fetched_at = np.fromiter((e.fetched_at_s for e in events), dtype=np.float64, count=len(events))
        m.worker_latency.observe_many(delivered_at - fetched_at[fetched_at > 0])
        m.batch_size.observe(len(events))
        m.batch_seconds.observe(time.perf_counter() - started)
        return True

    def _log_budget_spent(self, outcome: BatchOutcome) -> None:
        """One line per UTC event day whose review budget ran out."""
        budget = self.settings.review_cases_per_day
        for day, opened in sorted(outcome.review_cases_opened.items()):
            if opened >= budget and day not in self._budget_spent_days:
                self._budget_spent_days.add(day)
                log.warning("review budget spent: %d cases opened on %s (UTC, event time); REVIEWs of other cards "
                            "that day are allowed (reason %s)", opened,
                            time.strftime("%Y-%m-%d", time.gmtime(day * DAY_S)), REASON_REVIEW_BUDGET)

    @staticmethod
    def _log_failure(exc: BaseException, failures: int, size: int, backoff: float) -> None:
        """One line per failed attempt while it fails (the first with the traceback only when the error is not a
        known infrastructure error), then silence until it is delivered: no traceback wall during an outage."""
        if failures == 1:
            if isinstance(exc, INFRASTRUCTURE_ERRORS):
                log.error("batch of %d events failed (%r); retrying with back-off from %.1f s", size, exc, backoff)
            else:
                log.exception("batch of %d events failed; retrying with back-off from %.1f s", size, backoff)
        elif failures in RETRY_LOG_AT or failures % RETRY_LOG_EVERY == 0:
            log.error("batch of %d events still failing after %d attempts (%r)", size, failures, exc)
