"""``fraudstream demo``: the whole system on one machine with one command.

Starts the embedded broker and Redis (unless ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` are given), simulates a
sample stream if the data file is missing, trains models if the model directory has no ``LATEST``, creates the
topics, starts the worker and the review page, and a Prometheus server (Debian's ``prometheus``, when installed)
with the project's configuration, alert rules and console dashboard, then replays the stream: the days before
the replay start as fast as possible (to fill the online feature state), the rest at ``--rate`` tx/s with a
7-day chargeback label feed.  A live summary (replay phase, decisions, dead letters, duplicates, tx/s, p99
latency, read from the worker's metrics) is printed every few seconds, whatever the replay is doing.
Ctrl-C (or SIGTERM) stops everything the demo started.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fraudstream.cli.local_prometheus import (
    REVIEW_JOB,
    SELF_JOB,
    WORKER_JOB,
    LocalPrometheus,
    PrometheusUnavailable,
)
from fraudstream.stream.live_summary import MetricsSnapshot, format_live_summary, parse_worker_metrics

if TYPE_CHECKING:
    import pandas as pd

    from fraudstream.stream.settings import StreamSettings

DEFAULT_DATA = "data/sample.csv.gz"
DEFAULT_START_DATE = "2018-04-01"
#: Sample size: small enough to simulate and train in about a minute on 2 cores.
SAMPLE_CUSTOMERS, SAMPLE_TERMINALS, SAMPLE_DAYS = 1_000, 2_000, 60
#: The novel attack (card testing) runs in the last weeks of the sample (days before its end).
NOVEL_ATTACK_LAST_DAYS = 14
#: Days at the start of the data used for training; the replay starts right after.
TRAIN_DAYS = 40
#: Days before the replay start sent as fast as possible to fill the online state (30-day windows + 7-day delay).
WARMUP_DAYS = 37
LABELS_DELAY = "7d"
LABELS_LEAD_S = 86_400.0
#: Longest wait (s) for the worker's metrics endpoint after start.
WORKER_READY_TIMEOUT_S = 180.0
#: Grace (s) for the worker and the review page after SIGTERM before SIGKILL.
CHILD_STOP_GRACE_S = 15.0
#: Timeout (s) of one metrics request.
METRICS_HTTP_TIMEOUT_S = 2.0
#: Waiting for the worker to decide what was sent: poll period (s), give up after no progress for (s).
DRAIN_POLL_S = 1.0
DRAIN_IDLE_TIMEOUT_S = 30.0
#: Longest wait (s) for the replay thread to notice a stop; it is a daemon thread, so the demo exits anyway.
REPLAY_STOP_TIMEOUT_S = 10.0
#: Longest wait (s) for the replay's producer to deliver what it holds when it closes.
PRODUCER_CLOSE_TIMEOUT_S = 5.0
#: Port the demo's Prometheus prefers (its usual one); another free port when taken.
PROMETHEUS_PORT = 9090
#: Names of the replay phases in the live summary.
WARMUP_PHASE = "warm-up"
FINISHED_PHASE = "replay finished"
DAY = "D"


@dataclass(frozen=True)
class DemoOptions:
    """What the demo does, from the command line (service settings come from :class:`StreamSettings`)."""

    data: Path
    rate: float
    summary_every_s: float
    exit_after_replay: bool
    train_days: int
    warmup_days: int
    log_dir: Path
    prometheus_port: int = PROMETHEUS_PORT


def say(message: str) -> None:
    click.echo(f"[demo] {message}", err=True)


def available_port(preferred: int) -> int:
    """``preferred`` when it is free on all interfaces, else any free loopback port."""
    from fraudstream.stream.embedded import free_port

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("", preferred))
            return preferred
        except OSError:
            return free_port()


# ---- metrics of the worker (parsed by fraudstream.stream.live_summary) -----------------------------------------
def fetch_metrics(url: str) -> MetricsSnapshot | None:
    try:
        with urllib.request.urlopen(url, timeout=METRICS_HTTP_TIMEOUT_S) as response:
            return parse_worker_metrics(response.read().decode())
    except OSError:
        return None


# ---- the steps -------------------------------------------------------------------------------------------------
def ensure_sample(path: Path) -> None:
    """Simulate the sample stream into ``path`` unless it exists."""
    if path.exists():
        say(f"data: {path}")
        return
    import pandas as pd

    from fraudstream.training.datasets import write_transactions
    from fraudstream.training.simulator import SimulationConfig, simulate

    novel = pd.Timestamp(DEFAULT_START_DATE) + pd.Timedelta(SAMPLE_DAYS - NOVEL_ATTACK_LAST_DAYS, DAY)
    config = SimulationConfig(n_customers=SAMPLE_CUSTOMERS, n_terminals=SAMPLE_TERMINALS, nb_days=SAMPLE_DAYS,
                              start_date=DEFAULT_START_DATE, novel_start_date=novel.strftime("%Y-%m-%d"))
    say(f"simulating {SAMPLE_DAYS} days of {SAMPLE_CUSTOMERS} customers (card testing from {novel:%Y-%m-%d})")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_transactions(simulate(config), path)
    say(f"data: wrote {path}")


def run_foreground(argv: list[str], what: str) -> None:
    """Run a step to completion with its output on the terminal; stop it too on Ctrl-C."""
    from fraudstream.stream.embedded import die_with_parent, stop_process_group

    proc = subprocess.Popen(argv, start_new_session=True, preexec_fn=die_with_parent)
    try:
        code = proc.wait()
    finally:
        stop_process_group(proc, signal.SIGTERM, CHILD_STOP_GRACE_S)
    if code != 0:
        raise click.ClickException(f"{what} failed with exit code {code}: {' '.join(argv)}")


def ensure_models(model_dir: Path, data: Path, train_until: str) -> None:
    if (model_dir / "LATEST").exists():
        say(f"models: {model_dir} (LATEST = {(model_dir / 'LATEST').read_text().strip()})")
        return
    say(f"training models on {data} until {train_until} into {model_dir}")
    run_foreground([sys.executable, "-m", "fraudstream.cli.main", "train", str(data), "--until", train_until,
                    "--out", str(model_dir)], "training")


class Child:
    """A long-running subprocess of the demo (worker, review page), logged to a file, stopped on exit."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        from fraudstream.stream.embedded import spawn_logged

        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.process = spawn_logged(argv, self.log_path, env)
        say(f"started {name} pid={self.process.pid} (log: {self.log_path})")

    def check(self) -> None:
        """Raise when the process has exited, quoting its log."""
        from fraudstream.stream.embedded import log_tail

        code = self.process.poll()
        if code is not None:
            raise click.ClickException(f"the {self.name} exited with code {code}; its log {self.log_path} ends:\n"
                                       f"{log_tail(self.log_path)}")

    def stop(self) -> None:
        from fraudstream.stream.embedded import stop_process_group

        stop_process_group(self.process, signal.SIGTERM, CHILD_STOP_GRACE_S)
        say(f"stopped {self.name} pid={self.process.pid}")


def wait_for_metrics(url: str, worker: Child, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while fetch_metrics(url) is None:
        worker.check()
        if time.monotonic() > deadline:
            raise click.ClickException(f"the worker's metrics did not answer at {url} within {timeout_s:g} s "
                                       f"(log: {worker.log_path})")
        time.sleep(0.5)


class ReplayThread(threading.Thread):
    """The warm-up and the paced replay, in the background; ``stop`` ends it early."""

    def __init__(self, frame: pd.DataFrame, settings: StreamSettings, options: DemoOptions,
                 replay_start: pd.Timestamp,
                 wait_decided: Callable[[int, threading.Event], object]) -> None:
        super().__init__(name="replay", daemon=True)
        self.frame, self.settings, self.options, self.replay_start = frame, settings, options, replay_start
        self.wait_decided = wait_decided
        self.stop = threading.Event()
        self.sent = self.labels_sent = 0
        self.phase = WARMUP_PHASE if options.warmup_days else paced_phase(options.rate)
        #: (phase, replay summary) of each phase that ran.
        self.summaries: list[tuple[str, Any]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        import pandas as pd

        from fraudstream.detectors.schema import TX_DATETIME
        from fraudstream.stream.replay import make_producer, parse_duration, replay

        times = self.frame[TX_DATETIME]
        warm_from = self.replay_start - pd.Timedelta(self.options.warmup_days, DAY)
        phases = [(self.frame[(times >= warm_from) & (times < self.replay_start)], None),
                  (self.frame[times >= self.replay_start], self.options.rate)]
        producer = make_producer(self.settings.kafka_bootstrap_servers)
        done = [0, 0]
        try:
            for part, rate in phases:
                if len(part) == 0 or self.stop.is_set():
                    continue
                self.phase = WARMUP_PHASE if rate is None else paced_phase(rate)
                base = (done[0], done[1])

                def on_progress(sent: int, labels: int, base: tuple[int, int] = base) -> None:
                    self._progress(base[0] + sent, base[1] + labels)

                summary = replay(part, self.settings, rate=rate, labels_delay_s=parse_duration(LABELS_DELAY),
                                 labels_lead_s=LABELS_LEAD_S, progress=False, stop=self.stop, producer=producer,
                                 on_progress=on_progress)
                done = [done[0] + summary.sent, done[1] + summary.labels_sent]
                self.summaries.append((self.phase, summary))
                if rate is None:  # warm-up: let the worker catch up, so the paced part shows its own latency
                    say(f"warm-up sent ({summary.sent:,} tx); waiting for the worker to decide them")
                    self.wait_decided(done[0], self.stop)
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.phase = FINISHED_PHASE
            producer.close(timeout=PRODUCER_CLOSE_TIMEOUT_S)

    def _progress(self, sent: int, labels: int) -> None:
        self.sent, self.labels_sent = sent, labels


def paced_phase(rate: float) -> str:
    """Name of the paced replay phase in the live summary, e.g. ``paced 1,000 tx/s``."""
    return f"paced {rate:,.0f} tx/s"


def live_summary(previous: MetricsSnapshot | None, current: MetricsSnapshot | None, interval_s: float,
                 replay: ReplayThread) -> str:
    """One summary line from two scrapes of the worker's metrics ``interval_s`` apart and the replay's progress."""
    return format_live_summary(previous, current, interval_s, replay.sent, replay.labels_sent, replay.phase)


def wait_until(due_at: float, replay: threading.Thread, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> None:
    """Return at ``due_at`` (``clock`` time, s), not before, whether the replay thread runs or has ended.

    While the thread runs, the wait is a join (so nothing is lost); once it has ended, a join returns at once,
    so the rest of the wait is a sleep.
    """
    while (left := due_at - clock()) > 0:
        if replay.is_alive():
            replay.join(left)
        else:
            sleep(left)


def next_due(due_at: float, every_s: float, now: float) -> float:
    """The next summary time after ``due_at``: one period later, or one period from ``now`` when late."""
    return due_at + every_s if due_at + every_s > now else now + every_s


def start_prometheus(settings: StreamSettings, options: DemoOptions, review_port: int | None
                     ) -> LocalPrometheus | None:
    """Start the demo's Prometheus scraping the worker (and the review page); None, said why, when it cannot."""
    port = available_port(options.prometheus_port)
    targets = {WORKER_JOB: [f"127.0.0.1:{settings.metrics_port}"], SELF_JOB: [f"127.0.0.1:{port}"]}
    if review_port is not None:
        targets[REVIEW_JOB] = [f"127.0.0.1:{review_port}"]
    try:
        server = LocalPrometheus(targets, port, options.log_dir).start()
    except PrometheusUnavailable as exc:
        say(f"dashboard: Prometheus not started: {exc}")
        return None
    say(f"started prometheus pid={server.process.pid if server.process else '?'} (log: {server.log_path})")
    return server


def wait_until_decided(metrics_url: str, count: int, stop: threading.Event, idle_timeout_s: float) -> bool:
    """Wait until the worker has decided ``count`` transactions; False when it made no progress for
    ``idle_timeout_s`` or ``stop`` was set."""
    last_total, last_change = -1.0, time.monotonic()
    while not stop.is_set():
        snapshot = fetch_metrics(metrics_url)
        total = snapshot.total if snapshot is not None else last_total
        if total >= count:
            return True
        if total != last_total:
            last_total, last_change = total, time.monotonic()
        elif time.monotonic() - last_change > idle_timeout_s:
            say(f"the worker decided {last_total:,.0f} of {count:,} transactions and made no progress for "
                f"{idle_timeout_s:g} s")
            return False
        stop.wait(DRAIN_POLL_S)
    return False


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_demo(options: DemoOptions, settings: StreamSettings, stack: ExitStack) -> None:
    import pandas as pd

    from fraudstream.detectors.schema import TX_DATETIME
    from fraudstream.stream.embedded import EmbeddedKafka, EmbeddedRedis
    from fraudstream.stream.topics import ensure_topics, topic_names
    from fraudstream.training.datasets import read_transactions

    options.log_dir.mkdir(parents=True, exist_ok=True)
    say(f"logs: {options.log_dir}")
    if not settings.kafka_bootstrap_servers:
        broker = stack.enter_context(EmbeddedKafka(log_dir=options.log_dir))
        stack.callback(say, f"stopped kafka pid={broker.pid}")
        settings = settings.with_overrides(kafka_bootstrap_servers=broker.bootstrap_servers)
        say(f"started kafka pid={broker.pid} at {broker.bootstrap_servers}")
    if not settings.redis_url:
        redis = stack.enter_context(EmbeddedRedis(log_dir=options.log_dir))
        stack.callback(say, f"stopped redis pid={redis.pid}")
        settings = settings.with_overrides(redis_url=redis.url)
        say(f"started redis pid={redis.pid} at {redis.url}")

    ensure_sample(options.data)
    frame = read_transactions(options.data)
    first_day = frame[TX_DATETIME].min().normalize()
    replay_start = first_day + pd.Timedelta(options.train_days, DAY)
    ensure_models(Path(settings.model_dir), options.data, (replay_start - pd.Timedelta(1, DAY)).strftime("%Y-%m-%d"))
    created = ensure_topics(settings.kafka_bootstrap_servers, topic_names(settings), settings.partitions)
    say(f"topics: {', '.join(topic_names(settings))} ({len(created)} created)")

    settings = settings.with_overrides(metrics_port=available_port(settings.metrics_port),
                                       web_port=available_port(settings.web_port))
    from fraudstream.review_queue.settings import ReviewSettings

    review_port = available_port(ReviewSettings.model_fields["page_port"].default)
    env = dict(os.environ, PYTHONUNBUFFERED="1", KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
               REDIS_URL=settings.redis_url, FRAUDSTREAM_WORKER_MODEL_DIR=str(Path(settings.model_dir).resolve()),
               FRAUDSTREAM_WORKER_METRICS_PORT=str(settings.metrics_port),
               FRAUDSTREAM_WORKER_WEB_PORT=str(settings.web_port),
               FRAUDSTREAM_REVIEW_PAGE_PORT=str(review_port))
    worker = Child("worker", [sys.executable, "-m", "fraudstream.cli.main", "worker"], env, options.log_dir)
    stack.callback(worker.stop)
    metrics_url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    review: Child | None = None
    if importlib.util.find_spec("fraudstream.review_queue.web") is not None:
        review = Child("review-page", [sys.executable, "-m", "fraudstream.review_queue.web"], env, options.log_dir)
        stack.callback(review.stop)
    else:
        say("review page: not available (fraudstream.review_queue.web is not installed)")
    wait_for_metrics(metrics_url, worker, WORKER_READY_TIMEOUT_S)
    prometheus = start_prometheus(settings, options, review_port if review is not None else None)
    if prometheus is not None:
        stack.callback(say, "stopped prometheus")
        stack.callback(prometheus.stop)
        say(f"dashboard: {prometheus.console_url}")
        say(f"prometheus: {prometheus.url} (alerts: {prometheus.url}/alerts)")
    say(f"metrics: {metrics_url}")
    if review is not None:
        from fraudstream.cli.users import demo_login

        name, password = demo_login(settings.redis_url, settings.redis_prefix)
        say(f"review page: http://127.0.0.1:{review_port}/ (log in as {name} / {password}; "
            "the password is new on every run)")

    replayer = ReplayThread(frame, settings, options, replay_start,
                            lambda n, stop: wait_until_decided(metrics_url, n, stop, DRAIN_IDLE_TIMEOUT_S))
    stack.callback(replayer.join, REPLAY_STOP_TIMEOUT_S)
    stack.callback(replayer.stop.set)
    say(f"replaying from {replay_start:%Y-%m-%d} at {options.rate:g} tx/s after a {options.warmup_days}-day "
        f"warm-up as fast as possible; labels {LABELS_DELAY} after each transaction")
    replayer.start()
    previous: MetricsSnapshot | None = None
    previous_at = due_at = time.monotonic()
    reported_done = False
    while True:
        due_at = next_due(due_at, options.summary_every_s, time.monotonic())
        wait_until(due_at, replayer)
        worker.check()
        if review is not None:
            review.check()
        current, now = fetch_metrics(metrics_url), time.monotonic()
        say(live_summary(previous, current, now - previous_at, replayer))
        previous, previous_at = current or previous, now
        if replayer.error is not None:
            raise click.ClickException(f"replay failed: {replayer.error!r}")
        if not replayer.is_alive() and not reported_done:
            reported_done = True
            for phase, summary in replayer.summaries:
                say(f"{phase}: {summary.format()}")
            if options.exit_after_replay:
                wait_until_decided(metrics_url, replayer.sent, replayer.stop, DRAIN_IDLE_TIMEOUT_S)
                say(live_summary(previous, fetch_metrics(metrics_url), time.monotonic() - previous_at, replayer))
                return
            say("replay finished; still running, Ctrl-C to stop"
                + (f" (dashboard: {prometheus.console_url})" if prometheus is not None else ""))


@click.command("demo")
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), default=Path(DEFAULT_DATA),
              show_default=True, help="Transaction file; simulated when missing.")
@click.option("--models", "model_dir", default=None, help="Model directory (default: FRAUDSTREAM_WORKER_MODEL_DIR); "
              "trained when it has no LATEST.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=1000.0, show_default=True,
              help="Replay pace after the warm-up (tx/s).")
@click.option("--train-days", type=click.IntRange(min=1), default=TRAIN_DAYS, show_default=True,
              help="Days at the start of the data used for training; the replay starts after them.")
@click.option("--warmup-days", type=click.IntRange(min=0), default=WARMUP_DAYS, show_default=True,
              help="Days before the replay start sent as fast as possible to fill the online state.")
@click.option("--summary-every", "summary_every_s", type=click.FloatRange(min=0.1), default=5.0,
              show_default=True, help="Seconds between live summaries.")
@click.option("--exit-after-replay", is_flag=True, help="Stop everything when the replay is done.")
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the logs of the started processes go (default: a new temporary directory).")
@click.option("--prometheus-port", type=click.IntRange(min=1, max=65535), default=PROMETHEUS_PORT,
              show_default=True, help="Port of the demo's Prometheus and its dashboard (another one when taken).")
def command(data: Path, model_dir: str | None, rate: float, train_days: int, warmup_days: int,
            summary_every_s: float, exit_after_replay: bool, log_dir: Path | None, prometheus_port: int) -> None:
    """Start broker, Redis, worker, review page and Prometheus with its dashboard, and replay a sample stream
    (Ctrl-C stops all)."""
    from fraudstream.stream.settings import StreamSettings

    settings = StreamSettings.from_env(model_dir=model_dir)
    options = DemoOptions(data=data, rate=rate, summary_every_s=summary_every_s,
                          exit_after_replay=exit_after_replay, train_days=train_days, warmup_days=warmup_days,
                          log_dir=log_dir or Path(tempfile.mkdtemp(prefix="fraudstream-demo-")),
                          prometheus_port=prometheus_port)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    # Install both explicitly: a process started in the background by a non-interactive shell inherits SIGINT
    # ignored, and Python then keeps it ignored; the demo must still stop cleanly on Ctrl-C.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        with ExitStack() as stack:
            try:
                run_demo(options, settings, stack)
            except KeyboardInterrupt:
                say("stopping ...")
            finally:  # a second Ctrl-C must not cut the clean-up short
                for sig in handlers:
                    signal.signal(sig, signal.SIG_IGN)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    say("all stopped")
