"""Waiting in the integration tests: poll a condition until it holds, or fail quoting the services' logs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: Pause between two polls (s).
POLL_S = 0.2


def wait_for(what: str, check: Callable[[], T], timeout_s: float, logs: tuple[Path, ...] = ()) -> T:
    """``check()``'s first truthy value; after ``timeout_s`` an AssertionError naming ``what`` with the tails
    of ``logs``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p}:\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists())
            raise AssertionError(f"timed out waiting for {what}\n{tails}")
        time.sleep(POLL_S)
