"""The adaptive fetch wait: doubles while a partition with backlog starves, halves back while records flow."""

from __future__ import annotations

import pytest

from fraudstream.stream.broker.fetch_wait import FetchWait, apply_fetch_wait


def test_the_wait_doubles_up_to_its_ceiling_and_shortens_by_an_eighth_back_to_its_floor():
    wait = FetchWait(2, max_ms=40)
    assert [wait.starved() for _ in range(6)] == [4, 8, 16, 32, 40, 40]
    assert [wait.fed() for _ in range(4)] == [35, 31, 28, 25]
    for _ in range(40):
        wait.fed()
    assert wait.ms == 2 and wait.fed() == 2


def test_a_wait_outside_its_bounds_is_refused():
    with pytest.raises(ValueError, match="base_ms"):
        FetchWait(0)
    with pytest.raises(ValueError, match="base_ms"):
        FetchWait(50, max_ms=10)


def test_the_wait_is_set_on_the_fetcher_and_a_consumer_without_one_is_left_alone():
    class Fetcher:
        _fetch_max_wait_ms = 2

    class Consumer:
        _fetcher = Fetcher()

    consumer = Consumer()
    assert apply_fetch_wait(consumer, 16)  # type: ignore[arg-type]
    assert consumer._fetcher._fetch_max_wait_ms == 16
    assert not apply_fetch_wait(object(), 16)  # type: ignore[arg-type]
