"""The embedded broker and Redis: they answer, topics work, and no process outlives its owner."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest
import redis

from fraudstream.stream.embedded import (
    EmbeddedKafka,
    EmbeddedRedis,
    EmbeddedServiceError,
    kafka_api_versions_ok,
    redis_ping_ok,
)
from fraudstream.stream.topics import ensure_topics

pytestmark = pytest.mark.integration

#: Longest wait (s) for a process to disappear.
GONE_TIMEOUT_S = 10.0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by a dead parent's init) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, timeout_s: float = GONE_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_embedded_kafka_answers_creates_topics_idempotently_and_stops(read_topic):
    from kafka import KafkaProducer

    with EmbeddedKafka() as broker:
        pid, port = broker.pid, broker.port
        assert kafka_api_versions_ok(port)
        assert ensure_topics(broker.bootstrap_servers, ["a", "b"], partitions=2) == ["a", "b"]
        assert ensure_topics(broker.bootstrap_servers, ["a", "b", "c"], partitions=2) == ["c"]
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
        producer.send("a", key=b"k", value=b"v1").get(timeout=10)
        producer.close()
        assert broker.log_path.exists()
    assert not broker.running
    assert wait_gone(pid)
    assert not kafka_api_versions_ok(port)


def test_embedded_redis_answers_and_stops():
    with EmbeddedRedis() as server:
        pid = server.pid
        client = redis.Redis.from_url(server.url)
        client.set("fraudstream:probe", "1")
        assert client.get("fraudstream:probe") == b"1"
        assert client.config_get("save")["save"] == ""
        client.close()
    assert wait_gone(pid)
    assert not redis_ping_ok(server.port)


def test_start_failure_quotes_the_log_and_leaves_nothing(tmp_path):
    script = tmp_path / "broken-server"
    script.write_text("#!/bin/sh\necho 'cannot bind: address taken'\nexit 3\n")
    script.chmod(0o755)
    with pytest.raises(EmbeddedServiceError, match="cannot bind: address taken"):
        EmbeddedKafka(binary=str(script)).start()


def test_start_timeout_kills_the_silent_process(tmp_path):
    pid_file = tmp_path / "pid"
    script = tmp_path / "silent-server"
    script.write_text(f"#!/bin/sh\necho $$ > {pid_file}\necho started-but-silent\nexec sleep 60\n")
    script.chmod(0o755)
    server = EmbeddedRedis(binary=str(script), startup_timeout_s=0.5, stop_grace_s=1.0)
    with pytest.raises(EmbeddedServiceError, match="(?s)did not answer.*started-but-silent"):
        server.start()
    assert server.process is None
    assert wait_gone(int(pid_file.read_text()))


OWNER = textwrap.dedent("""
    import sys, time
    from fraudstream.stream.embedded import EmbeddedRedis
    server = EmbeddedRedis().start()
    print(server.pid, flush=True)
    sys.stdin.readline()     # the test has seen the child alive
    if sys.argv[1] == "exit":
        sys.exit(0)          # no stop(): the atexit hook must do it
    time.sleep(60)           # killed with SIGKILL by the test
""")


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_no_process_outlives_its_owner(how):
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, how], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        child = int(owner.stdout.readline())
        assert pid_alive(child)
        owner.stdin.write("go\n")
        owner.stdin.flush()
        if how == "sigkill":
            owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
        assert wait_gone(child), f"redis-server {child} still running after its owner ended ({how})"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


#: Small, fast training for the demo test (read by ``fraudstream train`` from the environment).
FAST_TRAINING_ENV = {
    "FRAUDSTREAM_TRAIN_ANOMALY_METHODS": "HBOS", "FRAUDSTREAM_TRAIN_ANOMALY_MAX_ROWS": "2000",
    "FRAUDSTREAM_TRAIN_LIGHT_TREES": "20", "FRAUDSTREAM_TRAIN_HEAVY_TREES": "30",
    "FRAUDSTREAM_TRAIN_STACKING_FOLDS": "2", "FRAUDSTREAM_TRAIN_IMBALANCE": "none",
}
#: Longest wait (s) for the demo to simulate, train, start everything and replay.
DEMO_START_TIMEOUT_S = 300.0
#: Longest wait (s) for the demo's dashboard to show the worker's decision rate.
DASHBOARD_TIMEOUT_S = 30.0
#: Longest wait (s) for the demo to stop everything after Ctrl-C (worker grace 15 s, broker and Redis a few s).
DEMO_STOP_TIMEOUT_S = 90.0


def test_demo_ctrl_c_stops_everything_it_started(tmp_path):
    import re
    import threading

    pytest.importorskip("fraudstream.cli.worker")
    from fraudstream.stream.embedded import free_port
    from fraudstream.training.datasets import write_transactions
    from fraudstream.training.simulator import SimulationConfig, simulate

    data = tmp_path / "sample.csv.gz"
    write_transactions(simulate(SimulationConfig(n_customers=100, n_terminals=200, nb_days=28, seed=3)), data)
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    env.update(FAST_TRAINING_ENV, FRAUDSTREAM_WORKER_METRICS_PORT=str(free_port()),
               FRAUDSTREAM_WORKER_WEB_PORT=str(free_port()), FRAUDSTREAM_REVIEW_PAGE_PORT=str(free_port()),
               PYTHONUNBUFFERED="1")
    demo = subprocess.Popen(
        [sys.executable, "-m", "fraudstream.cli.main", "demo", "--data", str(data), "--models",
         str(tmp_path / "models"), "--train-days", "21", "--warmup-days", "7", "--rate", "200",
         "--summary-every", "1", "--log-dir", str(tmp_path / "logs")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    replaying = threading.Event()

    def pump():
        for line in demo.stdout:
            lines.append(line)
            if re.match(r"\[demo\] \[[^]]+\] replayed", line):
                replaying.set()
        replaying.set()  # the demo ended: stop waiting

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        replaying.wait(DEMO_START_TIMEOUT_S)
        assert demo.poll() is None and any(re.match(r"\[demo\] \[[^]]+\] replayed", x) for x in lines), \
            "demo did not start replaying:\n" + "".join(lines)
        started = dict(re.findall(r"started ([\w-]+) pid=(\d+)", "".join(lines)))
        assert {"kafka", "redis", "worker"} <= set(started), "".join(lines)
        assert all(pid_alive(int(pid)) for pid in started.values())
        # the review page's URL and the demo analyst's login, printed once, let a newcomer in
        login = re.findall(r"\[demo\] review page: (\S+) \(log in as (\S+) / (\S+);", "".join(lines))
        assert len(login) == 1, "".join(lines)
        page_url, user, password = login[0]
        assert "".join(lines).count(password) == 1
        request = urllib.request.Request(f"{page_url.rstrip('/')}/api/login", method="POST",
                                         data=json.dumps({"user": user, "password": password}).encode(),
                                         headers={"content-type": "application/json"})
        deadline = time.monotonic() + DASHBOARD_TIMEOUT_S
        while True:  # the page may still be starting
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    assert json.loads(response.read())["role"] == "analyst"
                break
            except urllib.error.URLError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        if shutil.which("prometheus"):  # the dashboard URL comes first and its page shows the worker's figures
            urls = re.findall(r"\[demo\] (dashboard|metrics): (\S+)", "".join(lines))
            assert [name for name, _ in urls][:2] == ["dashboard", "metrics"] and "prometheus" in started, urls
            figure = re.compile(r'decisions/s</div><div class="fs-stat-value"><a [^>]+>[0-9.]+')
            deadline = time.monotonic() + DASHBOARD_TIMEOUT_S
            while True:  # a rate needs two scrapes (5 s apart) of the worker
                with urllib.request.urlopen(urls[0][1], timeout=10) as response:
                    page = response.read().decode()
                if figure.search(page) or time.monotonic() > deadline:
                    break
                time.sleep(1.0)
            assert figure.search(page), page[-3000:]
        demo.send_signal(signal.SIGINT)
        try:
            code = demo.wait(timeout=DEMO_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logs = "".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                           for p in sorted((tmp_path / "logs").glob("*.log")))
            pytest.fail(f"demo still running {DEMO_STOP_TIMEOUT_S:g} s after Ctrl-C:\n{''.join(lines)}\n{logs}")
        assert code == 0, "".join(lines)
        reader.join(timeout=10)
        leftovers = {name: pid for name, pid in started.items() if not wait_gone(int(pid))}
        assert not leftovers, f"still running after Ctrl-C: {leftovers}\n" + "".join(lines)
        assert "[demo] all stopped" in "".join(lines)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
