"""docker-compose.yml without a Docker engine: every file it mounts or builds exists, ports and service names agree
with the Prometheus and Grafana configuration, every variable is a setting the services read, and every command
is one the ``fraudstream`` CLI accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from fraudstream.cli.main import cli

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA_DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_DASHBOARDS = ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "fraudstream.yml"
#: What an operator expects to find in the file.
EXPECTED_SERVICES = {"kafka", "redis", "trainer", "worker", "review", "replay", "prometheus", "grafana"}
#: Services running the fraudstream image (its entrypoint is the `fraudstream` command).
FRAUDSTREAM_DOCKERFILE = "deploy/Dockerfile"
#: Sub-commands the compose file names that are not part of this release yet; each must really be missing.
PENDING_COMMANDS: set[str] = set()
#: Environment variable names the fraudstream services may read (settings are listed by `--help`).
SETTING_NAME = re.compile(r"\b(FRAUDSTREAM_[A-Z0-9_]+|KAFKA_BOOTSTRAP_SERVERS|REDIS_URL)\b")
CONTAINER_PROMETHEUS_DIR = "/etc/prometheus"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def fraudstream_services() -> dict[str, dict]:
    return {name: s for name, s in services().items()
            if isinstance(s.get("build"), dict) and s["build"].get("dockerfile") == FRAUDSTREAM_DOCKERFILE}


def bind_mounts(service: dict) -> list[tuple[Path, str]]:
    """(host path in the repository, container path) of every ./ bind mount."""
    found = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            found.append((ROOT / source, target))
    return found


def container_port(mapping: str) -> int:
    return int(str(mapping).split(":")[-1].split("/")[0])


def registered(name: str) -> click.Command | None:
    with click.Context(cli) as ctx:
        return cli.get_command(ctx, name)


def fraudstream_invocations(service: dict) -> list[list[str]]:
    """Argument lists given to `fraudstream` by a service: its command, or each `fraudstream ...` in an sh -c."""
    command = service.get("command", [])
    if service.get("entrypoint") == ["sh", "-c"]:
        script = " ".join(command)
        words = shlex.split(script.replace("(", " ").replace(")", " "))
        runs, current = [], None
        for word in words + ["&&"]:
            if word in ("&&", "||", ";"):
                if current is not None:
                    runs.append(current)
                current = None
            elif word == "fraudstream" and current is None:
                current = []
            elif current is not None:
                current.append(word)
        return runs
    return [list(command)]


def help_text(name: str) -> str:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def test_every_service_an_operator_needs_is_there() -> None:
    assert EXPECTED_SERVICES <= set(services())


def test_every_image_is_pinned() -> None:
    for name, service in services().items():
        if "image" in service:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag ({image})"


def test_every_mounted_or_built_file_exists() -> None:
    for name, service in services().items():
        for source, _ in bind_mounts(service):
            assert source.exists(), f"{name} mounts {source.relative_to(ROOT)}, which does not exist"
        build = service.get("build")
        if isinstance(build, dict):
            assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
    dockerfile = (ROOT / FRAUDSTREAM_DOCKERFILE).read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"{FRAUDSTREAM_DOCKERFILE} copies {source}, which does not exist"
    assert re.search(r'ENTRYPOINT \["fraudstream"\]', dockerfile)


def test_named_volumes_are_declared() -> None:
    declared = set(compose().get("volumes", {}))
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith(("./", "/")):
                assert source in declared, f"{name} uses volume {source!r}, not declared at the top level"


def test_redis_keeps_its_data_in_an_append_only_file_on_a_volume() -> None:
    redis = services()["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    data_dir = command[command.index("--dir") + 1]
    assert any(v.split(":")[1] == data_dir and not v.startswith("./") for v in redis["volumes"])
    assert "--save" not in command or command[command.index("--save") + 1] != ""


def test_the_worker_scales_and_prometheus_finds_every_replica() -> None:
    worker = services()["worker"]
    assert "ports" not in worker and "container_name" not in worker, \
        "a fixed host port or container name stops `--scale worker=N`"
    metrics_port = int(worker["environment"]["FRAUDSTREAM_WORKER_METRICS_PORT"])
    assert metrics_port in [int(p) for p in worker["expose"]]
    jobs = {job["job_name"]: job for job in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]}
    discovery = jobs["fraudstream-worker"]["dns_sd_configs"]
    assert [("worker", metrics_port)] == [(n, d["port"]) for d in discovery for n in d["names"]]


def test_prometheus_scrapes_the_review_page_on_its_port() -> None:
    review = services()["review"]
    port = int(review["environment"]["FRAUDSTREAM_REVIEW_PAGE_PORT"])
    assert port in [container_port(p) for p in review["ports"]]
    jobs = {job["job_name"]: job for job in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]}
    assert jobs["fraudstream-review"]["static_configs"][0]["targets"] == [f"review:{port}"]


def test_prometheus_runs_the_mounted_config_rules_and_consoles() -> None:
    prometheus = services()["prometheus"]
    mounts = dict((target, source) for source, target in bind_mounts(prometheus))
    host_dir = mounts[CONTAINER_PROMETHEUS_DIR]
    flags = dict(flag.split("=", 1) for flag in prometheus["command"])
    for flag in ("--config.file", "--web.console.templates", "--web.console.libraries"):
        path = flags[flag]
        assert path.startswith(CONTAINER_PROMETHEUS_DIR + "/"), flag
        assert (host_dir / path.removeprefix(CONTAINER_PROMETHEUS_DIR + "/")).exists(), f"{flag}={path}"
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    for rule_file in config["rule_files"]:
        assert (host_dir / rule_file).is_file(), rule_file
    assert 9090 in [container_port(p) for p in prometheus["ports"]]


def test_grafana_reads_the_provisioned_datasource_and_dashboards() -> None:
    grafana = services()["grafana"]
    mounts = dict((target, source) for source, target in bind_mounts(grafana))
    datasource = yaml.safe_load(GRAFANA_DATASOURCES.read_text())["datasources"][0]
    host, port = re.fullmatch(r"http://([\w-]+):(\d+)", datasource["url"]).groups()
    assert host in services() and int(port) in [container_port(p) for p in services()[host]["ports"]]
    dashboards_path = yaml.safe_load(GRAFANA_DASHBOARDS.read_text())["providers"][0]["options"]["path"]
    assert dashboards_path in mounts and any(mounts[dashboards_path].glob("*.json"))
    assert "/etc/grafana/provisioning" in mounts


def test_every_variable_is_a_setting_of_the_fraudstream_services() -> None:
    """Each service's variables are settings of the commands it runs (as their --help lists them)."""
    worker = set(SETTING_NAME.findall(help_text("worker")))
    assert {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "FRAUDSTREAM_WORKER_METRICS_PORT"} <= worker  # the probe works
    checked = 0
    for name, service in fraudstream_services().items():
        commands = {argv[0] for argv in fraudstream_invocations(service) if registered(argv[0]) is not None}
        known = set().union(*(SETTING_NAME.findall(help_text(c)) for c in commands)) if commands else worker
        for variable in service.get("environment", {}):
            assert SETTING_NAME.fullmatch(variable), f"{name}: {variable} is not a fraudstream setting name"
            assert variable in known, f"{name}: {variable} is not listed by `fraudstream {sorted(commands)} --help`"
            checked += 1
    assert checked >= 6


def test_every_command_is_one_the_cli_accepts() -> None:
    checked = 0
    for name, service in fraudstream_services().items():
        for argv in fraudstream_invocations(service):
            assert argv, f"{name}: empty fraudstream command"
            command = registered(argv[0])
            if argv[0] in PENDING_COMMANDS:
                assert command is None, f"`fraudstream {argv[0]}` exists now: remove it from PENDING_COMMANDS"
                continue
            assert command is not None, f"{name}: `fraudstream {argv[0]}` is not a sub-command"
            try:
                command.make_context(argv[0], list(argv[1:]))
            except click.BadParameter as exc:
                # A file another container writes (the sample, the models) cannot exist here; anything else can.
                param_type = getattr(exc.param, "type", None)
                if not (isinstance(param_type, click.Path) and param_type.exists and "does not exist" in str(exc)):
                    pytest.fail(f"{name}: `fraudstream {' '.join(argv)}` is rejected: {exc.format_message()}")
            except click.UsageError as exc:
                pytest.fail(f"{name}: `fraudstream {' '.join(argv)}` is rejected: {exc.format_message()}")
            checked += 1
    assert checked >= 4  # trainer (simulate, train), worker, replay


def test_the_commands_the_readme_gives_are_the_compose_ones() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docker compose up --build" in readme
    assert "--scale worker=" in readme


def test_services_prometheus_scrapes_listen_beyond_loopback() -> None:
    """Inside a container, loopback is unreachable from Prometheus' container: the scraped services bind all."""
    listed = services()
    assert listed["worker"]["environment"]["FRAUDSTREAM_WORKER_BIND_HOST"] == "0.0.0.0"
    assert listed["review"]["environment"]["FRAUDSTREAM_REVIEW_HOST"] == "0.0.0.0"
