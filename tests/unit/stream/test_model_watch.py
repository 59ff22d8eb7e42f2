"""A broken new model version is logged and reported once, not at every poll; the old model keeps scoring."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil

from fraudstream.detectors.bundle import LATEST
from fraudstream.stream.model_watch import ModelWatcher


def test_a_bad_version_is_reported_once_and_the_next_good_one_is_loaded(tiny_bundle, tmp_path, caplog):
    root = tmp_path / "models"
    shutil.copytree(tiny_bundle.root, root)
    good = tiny_bundle.version
    failures: list[BaseException] = []
    watcher = ModelWatcher(root, poll_s=0.01, on_failure=failures.append)
    assert watcher.load_now().version == good
    broken = root / "broken-version"
    shutil.copytree(root / good, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["thresholds"] = {k: (0.99 if isinstance(v, float) else v) for k, v in manifest["thresholds"].items()}
    (broken / "manifest.json").write_text(json.dumps(manifest))  # an edited threshold: checksum refuses it
    (root / LATEST).write_text("broken-version\n")

    async def polls(n: int) -> list[bool]:
        return [await watcher.check_once() for _ in range(n)]

    with caplog.at_level(logging.INFO, logger="fraudstream.stream.model_watch"):
        assert asyncio.run(polls(5)) == [False] * 5
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and len(failures) == 1, [r.getMessage() for r in errors]
    assert "broken-version" in errors[0].getMessage() and errors[0].exc_info is None  # one line, no traceback
    assert watcher.current is not None and watcher.current.version == good

    shutil.copytree(root / good, root / "fixed-version")  # the next good version is loaded at the next poll
    (root / LATEST).write_text("fixed-version\n")
    assert asyncio.run(polls(1)) == [True] and len(failures) == 1
