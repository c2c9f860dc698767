"""The granularities of statistics, defined once: how the API names them, how the engine names them,
how long their buckets are, where each is computed from, and which are stored."""

from __future__ import annotations

import dataclasses
from typing import Literal

# The 15-minute bucket: the resolution of computation and of the API.
BUCKET_SECONDS = 900
SECONDS_PER_HOUR = 3600
SECONDS_PER_DAY = 86_400
# Watt-seconds in a kilowatt-hour: energy (kWh) over a span (s) is a mean power (W) with this.
WATT_SECONDS_PER_KWH = 3_600_000.0

# The engine's local periods, in each household's time zone.
Granularity = Literal["hour", "day", "week", "month", "year"]


@dataclasses.dataclass(frozen=True)
class Level:
    """One granularity of statistics."""

    name: str  # the API's `group_by` value, and `statistics_periods.granularity` for stored levels
    engine: Granularity | None  # the engine's local period; None for the 15-minute bucket
    nominal_s: int  # the usual length of a bucket, to bound the size of a request
    longest_s: int  # longer than any bucket of the level (DST days, leap years, historic offsets)
    source: str | None  # the level its buckets are rolled up from; None: computed from readings
    stored: bool  # kept in `statistics_periods`; otherwise computed when asked for


LEVELS: tuple[Level, ...] = (
    Level("15_mins", None, BUCKET_SECONDS, BUCKET_SECONDS, None, stored=False),
    Level("hourly", "hour", SECONDS_PER_HOUR, 2 * SECONDS_PER_HOUR, "15_mins", stored=False),
    Level("daily", "day", SECONDS_PER_DAY, 2 * SECONDS_PER_DAY, "15_mins", stored=True),
    Level("weekly", "week", 7 * SECONDS_PER_DAY, 8 * SECONDS_PER_DAY, "daily", stored=False),
    Level("monthly", "month", 28 * SECONDS_PER_DAY, 32 * SECONDS_PER_DAY, "daily", stored=False),
    Level("yearly", "year", 365 * SECONDS_PER_DAY, 367 * SECONDS_PER_DAY, "daily", stored=False),
)
LEVEL: dict[str, Level] = {level.name: level for level in LEVELS}
GRANULARITIES: tuple[Granularity, ...] = tuple(level.engine for level in LEVELS if level.engine is not None)
STORED_LEVEL = next(level for level in LEVELS if level.stored)
