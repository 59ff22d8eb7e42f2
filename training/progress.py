"""Progress of long runs (train, evaluate, backtest): phases as time-stamped lines, counted steps as bars.

Library code takes a :class:`Progress` and calls :meth:`Progress.phase` and :meth:`Progress.steps`; it never
prints.  The CLI passes a :class:`ConsoleProgress` (``tqdm`` bars on stderr, phase lines written through tqdm so
they do not break a bar); tests and library callers get :data:`SILENT` by default.

Example
-------
>>> progress = SILENT
>>> with progress.steps(3, "folds") as advance:
...     for _ in range(3):
...         advance(1)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from tqdm import tqdm

#: Called with the number of steps just finished.
Advance = Callable[[int], None]


def _ignore(steps: int = 1) -> None:
    """An ``advance`` that reports nothing."""


class Progress:
    """Reports nothing; the base of every reporter (and the default)."""

    def phase(self, message: str) -> None:
        """A new phase of the run started (one line, e.g. ``fold 2: fitting the light model``)."""

    @contextmanager
    def steps(self, total: int, description: str, unit: str = "step") -> Iterator[Advance]:
        """A counted part of the run: ``total`` steps of ``unit``; yields ``advance(n)``."""
        yield _ignore


#: The reporter that reports nothing.
SILENT = Progress()


class ConsoleProgress(Progress):
    """Phase lines ``[  12.3 s] message`` and tqdm bars on a text stream (stderr by default).

    Parameters
    ----------
    stream : where to write.
    bars : draw bars (None: only when ``stream`` is a terminal, so logs of non-interactive runs stay readable).
    clock : monotonic clock (s) the phase lines are stamped with, from the reporter's creation.
    refresh_s : shortest time between two redraws of a bar (s).
    """

    def __init__(self, stream: TextIO | None = None, bars: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, refresh_s: float = 0.5) -> None:
        self.refresh_s = refresh_s
        self.stream = stream if stream is not None else sys.stderr
        self.bars = self.stream.isatty() if bars is None else bars
        self.clock = clock
        self.started = clock()

    def phase(self, message: str) -> None:
        tqdm.write(f"[{self.clock() - self.started:7.1f} s] {message}", file=self.stream)

    @contextmanager
    def steps(self, total: int, description: str, unit: str = "step") -> Iterator[Advance]:
        if not self.bars:
            yield _ignore
            return
        with tqdm(total=total, desc=description, unit=unit, file=self.stream, leave=False, mininterval=self.refresh_s,
                  dynamic_ncols=True) as bar:
            yield bar.update


class MessageProgress(Progress):
    """Passes every phase line to a callback (e.g. ``list.append`` in a test); no bars."""

    def __init__(self, callback: Callable[[str], None]) -> None:
        self.callback = callback

    def phase(self, message: str) -> None:
        self.callback(message)


def as_progress(progress: Progress | Callable[[str], None] | None) -> Progress:
    """A :class:`Progress` from a reporter, a callback taking phase lines, or None (silent)."""
    if progress is None:
        return SILENT
    if isinstance(progress, Progress):
        return progress
    return MessageProgress(progress)
