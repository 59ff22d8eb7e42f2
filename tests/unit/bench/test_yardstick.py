"""The machine yardstick the suite prints at its start and end."""

import math

from fraudstream.bench.common import yardstick_ms
from fraudstream.bench.suite import yardstick_line


def test_yardstick_is_a_positive_wall_time_in_ms():
    value = yardstick_ms(repeats=2, steps=2_000)
    assert math.isfinite(value) and value > 0


def test_yardstick_line_names_both_ends():
    line = yardstick_line({"start": 26.04, "end": 41.5})
    assert "26.0 ms at the start" in line and "41.5 ms at the end" in line
