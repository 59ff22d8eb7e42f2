"""Progress reporters: phase lines with elapsed time, bars only where asked, callbacks for tests."""

import io

from fraudstream.training.progress import SILENT, ConsoleProgress, MessageProgress, as_progress


def test_console_phase_lines_carry_the_elapsed_time():
    ticks = iter([10.0, 12.5])
    out = io.StringIO()
    progress = ConsoleProgress(out, bars=False, clock=lambda: next(ticks))
    progress.phase("fold 0: fitting")
    assert out.getvalue() == "[    2.5 s] fold 0: fitting\n"


def test_console_bar_counts_steps_and_is_off_on_a_non_terminal_stream():
    out = io.StringIO()
    with ConsoleProgress(out, bars=True, refresh_s=0).steps(4, "folds", unit="fold") as advance:
        advance(3)
        advance(1)
    assert "folds" in out.getvalue() and "3/4" in out.getvalue()
    quiet = io.StringIO()
    with ConsoleProgress(quiet).steps(4, "folds") as advance:  # StringIO is not a terminal: no bar
        advance(4)
    assert quiet.getvalue() == ""


def test_as_progress_wraps_callbacks_and_defaults_to_silent():
    seen: list[str] = []
    progress = as_progress(seen.append)
    assert isinstance(progress, MessageProgress)
    progress.phase("hello")
    with progress.steps(2, "x") as advance:
        advance(2)
    assert seen == ["hello"]
    assert as_progress(None) is SILENT
    console = ConsoleProgress(io.StringIO(), bars=False)
    assert as_progress(console) is console
