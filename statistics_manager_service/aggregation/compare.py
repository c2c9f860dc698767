"""Which earlier bucket each bucket of a series is compared with (`compare_to`).

A bucket's local start moves back by a calendar shift and the earlier bucket is the bucket of the
same granularity holding the shifted instant:

- `previous_year`: one local calendar year back, same wall-clock time; a date the earlier year lacks
  clamps to its month's end (29 February 2028 -> 28 February 2027).
- `previous_period`: back by the length of the requested buckets' whole span, counted in the
  coarsest local calendar unit that measures it exactly: years when the span runs from a 1 January
  to a 1 January, months when from a first of a month to a first of a month (a day the earlier month
  lacks clamps to its end: 31 March -> 28 or 29 February), days when from midnight to midnight (the
  day before a 23-hour day is the whole previous day), else its duration in seconds.

A wall-clock time the earlier day skips (a spring-forward hour) moves forward; one it repeats takes
the first occurrence.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import pandas as pd

from statistics_manager_service.aggregation.arrays import IntArray
from statistics_manager_service.aggregation.granularity import BUCKET_SECONDS, Granularity
from statistics_manager_service.aggregation.localtime import localize_wall_seconds, wall_seconds
from statistics_manager_service.aggregation.rollup import period_starts

CompareTo = Literal["previous_period", "previous_year"]
COMPARE_TO: tuple[CompareTo, ...] = ("previous_period", "previous_year")


@dataclasses.dataclass(frozen=True)
class CalendarShift:
    """How far back the earlier buckets lie: local calendar years, months and days, or seconds."""

    years: int = 0
    months: int = 0
    days: int = 0
    seconds: int = 0


def comparison_shift(span_start_s: int, span_end_s: int, zone: str, compare_to: CompareTo) -> CalendarShift:
    """The shift of `compare_to` for the buckets spanning [span_start_s, span_end_s) in `zone`."""
    if compare_to == "previous_year":
        return CalendarShift(years=1)
    start, end = pd.to_datetime(
        wall_seconds(np.array([span_start_s, span_end_s], dtype=np.int64), zone), unit="s"
    )
    if start == start.normalize() and end == end.normalize():
        months = (end.year - start.year) * 12 + end.month - start.month
        if start.day == 1 and end.day == 1 and start.month == 1 and end.month == 1:
            return CalendarShift(years=end.year - start.year)
        if start.day == 1 and end.day == 1:
            return CalendarShift(months=months)
        return CalendarShift(days=(end - start).days)
    return CalendarShift(seconds=span_end_s - span_start_s)


def earlier_bucket_starts(
    bucket_starts_s: IntArray, zone: str, shift: CalendarShift, granularity: Granularity | None
) -> IntArray:
    """The start of the bucket each bucket is compared with (None granularity: 15-minute buckets)."""
    starts = np.asarray(bucket_starts_s, dtype=np.int64)
    if starts.size == 0:
        return starts
    if shift.seconds:
        shifted = starts - shift.seconds
    else:
        local = pd.DatetimeIndex(wall_seconds(starts, zone).astype("datetime64[s]"))
        # DateOffset clamps a day the earlier month lacks to that month's last day.
        moved = local - pd.DateOffset(years=shift.years, months=shift.months, days=shift.days)
        shifted = localize_wall_seconds(moved.as_unit("s").asi8.astype(np.int64), zone)
    if granularity is None:
        return shifted // BUCKET_SECONDS * BUCKET_SECONDS
    zones = np.full(shifted.size, zone, dtype=object)
    return period_starts(shifted, zones, granularity)
