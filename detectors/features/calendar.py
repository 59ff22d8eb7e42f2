"""Calendar flags of a transaction time (weekend, night), shared by the batch and the incremental features.

Both work on epoch seconds (UTC) with exact integer arithmetic: the time is floored to whole seconds first, so a
time a fraction of a second before midnight never rounds into the next day.
"""

from __future__ import annotations

import numpy as np

from fraudstream.detectors.features.definition import DAY_S, HOUR_S

#: Weekday of 1970-01-01 (a Thursday) with Monday = 0.
EPOCH_WEEKDAY = 3
#: First weekend day with Monday = 0 (Saturday); Sunday = 6 is the other one.
FIRST_WEEKEND_DAY = 5
DAYS_PER_WEEK = 7


def weekend_flags(timestamp: np.ndarray) -> np.ndarray:
    """1.0 where the UTC weekday is Saturday or Sunday, else 0.0.

    Parameters
    ----------
    timestamp : epoch seconds (UTC), float64 array.
    """
    seconds = np.floor(np.asarray(timestamp, dtype=np.float64))
    weekday = (np.floor_divide(seconds, DAY_S) + EPOCH_WEEKDAY) % DAYS_PER_WEEK
    return (weekday >= FIRST_WEEKEND_DAY).astype(np.float64)


def night_flags(timestamp: np.ndarray, night_end_hour: int) -> np.ndarray:
    """1.0 where the UTC hour (0..23) is ``<= night_end_hour``, else 0.0.

    Parameters
    ----------
    timestamp : epoch seconds (UTC), float64 array.
    night_end_hour : last hour (UTC) that still counts as night.
    """
    seconds = np.floor(np.asarray(timestamp, dtype=np.float64))
    second_of_day = seconds - np.floor_divide(seconds, DAY_S) * DAY_S
    hour = np.floor_divide(second_of_day, HOUR_S)
    return (hour <= night_end_hour).astype(np.float64)
