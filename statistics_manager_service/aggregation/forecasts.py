"""Where a stored forecast comes from, and the built-in baseline: a weekday's mean 15-minute profile.

The baseline forecast of a household's local day is, for each quarter hour of that day, the mean
consumption of the same local wall-clock quarter hour on the same weekday of the previous
`BASELINE_WEEKS` weeks, over the weeks that have a value for it. Quarter hours are matched by wall
clock, so a daylight-saving day borrows its repeated hour from both occurrences and a skipped hour
has no value.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Literal

import numpy as np
import pandas as pd

from statistics_manager_service.aggregation.arrays import FloatArray, IntArray
from statistics_manager_service.aggregation.granularity import BUCKET_SECONDS, SECONDS_PER_DAY
from statistics_manager_service.aggregation.localtime import local_day_bounds, wall_seconds

# The origin of a stored forecast curve: a forecast service (fetched, or published with its values),
# the built-in weekday baseline, or the made-up curve of the mock producer.
ForecastOrigin = Literal["external", "baseline", "mock"]
FORECAST_ORIGINS: tuple[ForecastOrigin, ...] = ("external", "baseline", "mock")

BASELINE_WEEKS = 4
# The frame `weekday_baseline` reads: a household's 15-minute buckets and their consumption.
HISTORY_COLUMNS = ("bucket_start", "consumption_kwh")


@dataclasses.dataclass(frozen=True)
class BaselineForecast:
    """A day's baseline: its quarter hours that have history, their mean, and the weeks behind it."""

    day: dt.date
    starts_s: IntArray
    energies_kwh: FloatArray
    history_weeks: int  # how many of the previous same weekdays had any consumption


def history_days(day: dt.date, weeks: int = BASELINE_WEEKS) -> list[dt.date]:
    """Return the same weekdays of the previous `weeks` weeks, the oldest first."""
    return [day - dt.timedelta(weeks=week) for week in range(weeks, 0, -1)]


def _wall_quarter(instants_s: IntArray, tz: str) -> IntArray:
    """Return the local wall-clock quarter hour of the day (0 to 95) of each instant."""
    wall = wall_seconds(instants_s, tz)
    return (wall % SECONDS_PER_DAY) // BUCKET_SECONDS


def weekday_baseline(history: pd.DataFrame, day: dt.date, tz: str) -> BaselineForecast:
    """Return the baseline forecast of a local day from the household's buckets of `history_days(day)`.

    `history` has the columns `HISTORY_COLUMNS`; buckets outside those days and missing
    consumption are ignored. Quarter hours without any history are left out of the forecast.
    """
    missing = set(HISTORY_COLUMNS) - set(history.columns)
    if missing:
        raise ValueError(f"history lacks the columns {sorted(missing)}")
    day_bounds = np.array([local_day_bounds(past, tz) for past in history_days(day)], dtype=np.int64)
    starts = history["bucket_start"].to_numpy(dtype=np.int64)
    energy = history["consumption_kwh"].to_numpy(dtype=np.float64, na_value=np.nan)
    # Which of the history days each bucket falls on (-1: none of them).
    position = np.searchsorted(day_bounds[:, 0], starts, side="right") - 1
    inside = (position >= 0) & (starts < day_bounds[np.maximum(position, 0), 1]) & np.isfinite(energy)
    history_weeks = int(np.unique(position[inside]).size)
    quarters = _wall_quarter(starts[inside], tz)
    totals = np.bincount(quarters, weights=energy[inside], minlength=SECONDS_PER_DAY // BUCKET_SECONDS)
    counts = np.bincount(quarters, minlength=SECONDS_PER_DAY // BUCKET_SECONDS)

    start_s, end_s = local_day_bounds(day, tz)
    targets = np.arange(start_s, end_s, BUCKET_SECONDS, dtype=np.int64)
    target_quarters = _wall_quarter(targets, tz)
    known = counts[target_quarters] > 0
    means = totals[target_quarters][known] / counts[target_quarters][known]
    return BaselineForecast(day, targets[known], means, history_weeks)
