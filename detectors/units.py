"""Units every part of fraudstream converts with, defined once."""

#: Milliseconds per second.
MS_PER_S = 1000.0
#: Seconds per minute, hour and day.
MINUTE_S = 60.0
HOUR_S = 3_600.0
DAY_S = 86_400.0
