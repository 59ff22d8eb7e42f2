"""The demo's summary loop waits a full period between summaries, before and after the replay thread ends."""

from __future__ import annotations

import threading
import time

import pytest

from fraudstream.cli.demo import next_due, paced_phase, wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def ended_thread() -> threading.Thread:
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    return thread


def test_after_the_replay_ended_the_wait_sleeps_until_due() -> None:
    clock = FakeClock()
    wait_until(105.0, ended_thread(), clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [5.0]
    assert clock.now == 105.0


def test_a_due_time_in_the_past_does_not_wait() -> None:
    clock = FakeClock()
    wait_until(99.0, ended_thread(), clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


def test_a_running_replay_is_joined_and_the_wait_still_ends_on_time() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, args=(30.0,), daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        wait_until(started + 0.3, thread)
        assert 0.3 <= time.monotonic() - started < 5.0
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join()


def test_real_clock_with_an_ended_thread_does_not_return_early() -> None:
    """The loop used to join the ended replay thread, which returns at once: hundreds of summaries a second."""
    thread = ended_thread()
    started = time.monotonic()
    count = 0
    due = started
    while time.monotonic() - started < 0.5:
        due = next_due(due, 0.1, time.monotonic())
        wait_until(due, thread)
        count += 1
    assert count <= 6


@pytest.mark.parametrize(("due", "now", "expected"), [(10.0, 11.0, 15.0), (10.0, 16.0, 21.0), (10.0, 15.0, 20.0)])
def test_next_due_keeps_the_period_and_skips_missed_ticks(due: float, now: float, expected: float) -> None:
    assert next_due(due, 5.0, now) == expected


def test_paced_phase_names_the_rate() -> None:
    assert paced_phase(1000.0) == "paced 1,000 tx/s"
