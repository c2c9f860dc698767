"""Local wall-clock arithmetic on epoch seconds, vectorized per IANA time zone."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from statistics_manager_service.aggregation.arrays import IntArray, ObjectArray, label_groups
from statistics_manager_service.aggregation.granularity import SECONDS_PER_DAY

# 1970-01-01 was a Thursday: shifting by 3 makes Monday weekday 0, as ISO weeks want.
_EPOCH_WEEKDAY = 3
# Local day number 0.
_EPOCH_DATE = dt.date(1970, 1, 1)


def first_of_next_month(day: dt.date) -> dt.date:
    """Return the first day of the month after `day`'s."""
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def day_number(day: dt.date) -> int:
    """Return a date as the engine numbers local days: days since 1970-01-01."""
    return (day - _EPOCH_DATE).days


def date_of(day_number_: int) -> dt.date:
    """Return the date of a local day number (days since 1970-01-01)."""
    return _EPOCH_DATE + dt.timedelta(days=int(day_number_))


def local_day_bounds(day: dt.date, tz: str) -> tuple[int, int]:
    """Return the instants a local day starts and ends."""
    zone = ZoneInfo(tz)
    start = dt.datetime.combine(day, dt.time(), zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
    return int(start.timestamp()), int(end.timestamp())


def utc_text(epoch_s: int) -> str:
    """Return an instant as ISO 8601 in UTC with a `Z`, e.g. 2026-03-01T00:00:00Z."""
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).isoformat().replace("+00:00", "Z")


def wall_seconds(instants_s: IntArray, tz: str) -> IntArray:
    """Return local wall-clock times as seconds since 1970-01-01T00:00 local."""
    utc = pd.DatetimeIndex(pd.to_datetime(instants_s, unit="s", utc=True))
    local = utc.tz_convert(tz).tz_localize(None)
    return local.as_unit("s").asi8.astype(np.int64)


def localize_wall_seconds(wall_s: IntArray, tz: str) -> IntArray:
    """Return the instants of local wall-clock times (skipped times move forward, repeated take the first)."""
    naive = pd.DatetimeIndex(wall_s.astype("datetime64[s]"))
    # ambiguous=True picks the DST reading, i.e. the earlier of two instants with the same wall time.
    local = naive.tz_localize(tz, ambiguous=np.ones(wall_s.size, dtype=bool), nonexistent="shift_forward")
    return local.as_unit("s").asi8.astype(np.int64)


def weekday(days: IntArray) -> IntArray:
    """Return the ISO weekday index (Monday = 0) of days since 1970-01-01."""
    return (days + _EPOCH_WEEKDAY) % 7


def zone_groups(zones: ObjectArray) -> Iterator[tuple[str, IntArray]]:
    """Yield each distinct time zone with the positions using it."""
    return label_groups(zones, "timezone")


def wall_seconds_in(instants_s: IntArray, zones: ObjectArray) -> IntArray:
    """Return each instant's local wall-clock seconds on its own zone's clock (one zone per instant)."""
    wall = np.empty(instants_s.size, dtype=np.int64)
    for zone, positions in zone_groups(zones):
        wall[positions] = wall_seconds(instants_s[positions], zone)
    return wall


def local_days_and_minutes(instants_s: IntArray, zones: ObjectArray) -> tuple[IntArray, IntArray]:
    """Return each instant's local day number (days since 1970-01-01) and minute of day."""
    wall = wall_seconds_in(instants_s, zones)
    days = wall // SECONDS_PER_DAY
    return days, (wall - days * SECONDS_PER_DAY) // 60


def day_starts_s(days: IntArray, zones: ObjectArray) -> IntArray:
    """Return the instant each local day starts (usually local midnight)."""
    out = np.empty(days.size, dtype=np.int64)
    for zone, positions in zone_groups(zones):
        # Localizing only distinct days keeps the pandas call small.
        unique_days, inverse = np.unique(days[positions], return_inverse=True)
        starts = localize_wall_seconds(unique_days * SECONDS_PER_DAY, zone)
        out[positions] = starts[inverse]
    return out


def format_local_iso(instants_s: pd.Series | IntArray, timezones: str | pd.Series | ObjectArray) -> pd.Series:
    """Format instants as ISO-8601 local times with their UTC offset, e.g. 2026-07-01T00:00:00+01:00."""
    index = instants_s.index if isinstance(instants_s, pd.Series) else None
    seconds = np.asarray(instants_s, dtype=np.int64)
    if isinstance(timezones, str):
        zones = np.full(seconds.size, timezones, dtype=object)
    else:
        zones = np.asarray(timezones, dtype=object)
    if zones.size != seconds.size:
        raise ValueError("timezones: need one time zone or one per instant")
    wall = wall_seconds_in(seconds, zones)
    offsets_s = wall - seconds
    unique_offsets, inverse = np.unique(offsets_s, return_inverse=True)
    suffixes = np.array([_offset_text(int(offset)) for offset in unique_offsets], dtype=str)
    stamps = np.datetime_as_string(wall.astype("datetime64[s]"), unit="s")
    text = np.strings.add(stamps, suffixes[inverse]) if seconds.size else np.array([], dtype=str)
    return pd.Series(text, index=index, dtype=str, name="timestamp")


def _offset_text(offset_s: int) -> str:
    """Return a UTC offset as +HH:MM."""
    sign = "-" if offset_s < 0 else "+"
    minutes = abs(offset_s) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
