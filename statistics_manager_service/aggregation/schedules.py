"""Tariff period schedules: parsed from data, evaluated as array lookups (season, weekday, minute)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from statistics_manager_service.aggregation.arrays import IntArray, ObjectArray
from statistics_manager_service.aggregation.granularity import SECONDS_PER_DAY
from statistics_manager_service.aggregation.localtime import weekday

MINUTES_PER_DAY = 1440
DEFAULT_SEASON = "all-year"
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
_DAY_SELECTORS: Mapping[str, tuple[int, ...]] = {
    "every-day": tuple(range(7)),
    "weekdays": tuple(range(5)),
    "weekend": (5, 6),
    **{name: (index,) for index, name in enumerate(_WEEKDAYS)},
}
_NTH_RULE = re.compile(r"^(first|second|third|fourth|last)-([a-z]+)-of-([a-z]+)$")
_FIXED_RULE = re.compile(r"^(\d{2})-(\d{2})$")
_RANGE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


@dataclass(frozen=True)
class DateRule:
    """A yearly date: a fixed month-day ("03-25") or a weekday of a month ("last-sunday-of-march")."""

    text: str
    month: int
    day: int = 0  # fixed day of month, 0 for a weekday rule
    weekday: int = 0
    nth: int = 0  # 1..4, or -1 for the last

    def days_in(self, years: IntArray) -> IntArray:
        """Return the rule's date in each year as days since 1970-01-01."""
        month_start = (years - 1970).astype("datetime64[Y]").astype("datetime64[M]") + (self.month - 1)
        first_day = month_start.astype("datetime64[D]").astype(np.int64)
        if self.nth == 0:
            return first_day + self.day - 1
        if self.nth > 0:
            return first_day + (self.weekday - weekday(first_day)) % 7 + 7 * (self.nth - 1)
        last_day = (month_start + 1).astype("datetime64[D]").astype(np.int64) - 1
        return last_day - (weekday(last_day) - self.weekday) % 7


def parse_date_rule(text: Any, path: str) -> DateRule:
    """Parse a yearly date rule, naming the key on error."""
    value = str(text).strip().lower()
    nth = _NTH_RULE.match(value)
    if nth and nth.group(2) in _WEEKDAYS and nth.group(3) in _MONTHS:
        return DateRule(
            value,
            month=_MONTHS.index(nth.group(3)) + 1,
            weekday=_WEEKDAYS.index(nth.group(2)),
            nth=_ORDINALS[nth.group(1)],
        )
    fixed = _FIXED_RULE.match(value)
    if fixed and 1 <= int(fixed.group(1)) <= 12 and 1 <= int(fixed.group(2)) <= 28:
        return DateRule(value, month=int(fixed.group(1)), day=int(fixed.group(2)))
    raise ValueError(f"{path}: expected 'MM-DD' (day <= 28) or e.g. 'last-sunday-of-march', got {text!r}")


@dataclass(frozen=True)
class Season:
    """A named part of the year, from one yearly date (inclusive) until another (exclusive)."""

    name: str
    starts: DateRule
    ends: DateRule


@dataclass(frozen=True)
class Schedule:
    """Which named period applies at each local minute, per season and weekday."""

    name: str
    period_names: tuple[str, ...]
    season_names: tuple[str, ...]  # index 0 is the default season
    seasons: tuple[Season, ...]  # explicit seasons, in season_names[1:] order
    digest: str  # content hash: two schedules with equal digests assign identical periods
    table: IntArray = field(compare=False, repr=False)  # [season, weekday, minute] -> period index


def _parse_minutes(text: str, path: str) -> int:
    """Parse HH:MM as minutes since midnight (24:00 allowed)."""
    hours, minutes = int(text[:2]), int(text[3:])
    if minutes >= 60 or hours * 60 + minutes > MINUTES_PER_DAY:
        raise ValueError(f"{path}: invalid time {text!r}")
    return hours * 60 + minutes


def _minute_mask(ranges: Any, path: str) -> np.ndarray:
    """Return the minutes of the day covered by a list of 'HH:MM-HH:MM' ranges."""
    if not isinstance(ranges, list) or not ranges:
        raise ValueError(f"{path}: expected a non-empty list of 'HH:MM-HH:MM' ranges")
    mask = np.zeros(MINUTES_PER_DAY, dtype=np.int64)
    for text in ranges:
        match = _RANGE.match(str(text).strip())
        if not match:
            raise ValueError(f"{path}: expected 'HH:MM-HH:MM', got {text!r}")
        start = _parse_minutes(f"{match.group(1)}:{match.group(2)}", path) % MINUTES_PER_DAY
        end = _parse_minutes(f"{match.group(3)}:{match.group(4)}", path)
        if end % MINUTES_PER_DAY == start and end != MINUTES_PER_DAY:
            raise ValueError(f"{path}: empty range {text!r}")
        if end > start:
            mask[start:end] += 1
        else:  # wraps past midnight, e.g. 22:00-08:00
            mask[start:] += 1
            mask[:end] += 1
    return mask


def _mapping(raw: Any, path: str) -> Mapping[str, Any]:
    """Return raw as a mapping or fail naming the key."""
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError(f"{path}: expected a non-empty mapping")
    return raw


def parse_schedule(name: str, raw: Any, path: str) -> Schedule:
    """Parse and validate one schedule: every minute of every day of every season has one period."""
    spec = _mapping(raw, path)
    seasons: list[Season] = []
    for season_name, bounds in (spec.get("seasons") or {}).items():
        season_path = f"{path}.seasons.{season_name}"
        bounds = _mapping(bounds, season_path)
        if set(bounds) != {"from", "until"}:
            raise ValueError(f"{season_path}: expected exactly the keys 'from' and 'until'")
        seasons.append(
            Season(
                str(season_name),
                parse_date_rule(bounds["from"], f"{season_path}.from"),
                parse_date_rule(bounds["until"], f"{season_path}.until"),
            )
        )
    default = str(spec.get("default_season", DEFAULT_SEASON))
    season_names = (default, *(season.name for season in seasons))
    periods = _mapping(spec.get("periods"), f"{path}.periods")
    if set(map(str, periods)) != set(season_names):
        raise ValueError(f"{path}.periods: expected one entry per season {sorted(season_names)}")
    period_names: list[str] = []
    table = np.full((len(season_names), 7, MINUTES_PER_DAY), -1, dtype=np.int64)
    for season_index, season_name in enumerate(season_names):
        days = _mapping(periods[season_name], f"{path}.periods.{season_name}")
        covered_days = np.zeros(7, dtype=np.int64)
        for selector, by_period in days.items():
            day_path = f"{path}.periods.{season_name}.{selector}"
            if selector not in _DAY_SELECTORS:
                raise ValueError(f"{day_path}: unknown day selector; use one of {', '.join(_DAY_SELECTORS)}")
            weekdays = list(_DAY_SELECTORS[selector])
            covered_days[weekdays] += 1
            coverage = np.zeros(MINUTES_PER_DAY, dtype=np.int64)
            for period, ranges in _mapping(by_period, day_path).items():
                if str(period) not in period_names:
                    period_names.append(str(period))
                mask = _minute_mask(ranges, f"{day_path}.{period}")
                coverage += mask
                table[season_index, weekdays, :] = np.where(
                    mask > 0, period_names.index(str(period)), table[season_index, weekdays, :]
                )
            if (coverage != 1).any():
                minute = int(np.flatnonzero(coverage != 1)[0])
                problem = "not covered" if coverage[minute] == 0 else "covered twice"
                raise ValueError(f"{day_path}: minute {minute // 60:02d}:{minute % 60:02d} is {problem}")
        if (covered_days != 1).any():
            day = _WEEKDAYS[int(np.flatnonzero(covered_days != 1)[0])]
            raise ValueError(f"{path}.periods.{season_name}: {day} must be covered by exactly one selector")
    # Sorted period names make equal schedules look equal whatever order the YAML lists them in.
    ordered = sorted(period_names)
    table = np.array([ordered.index(name) for name in period_names], dtype=np.int64)[table]
    period_names = ordered
    digest = hashlib.sha256(
        repr((period_names, [(s.name, s.starts.text, s.ends.text) for s in seasons], default)).encode()
        + table.tobytes()
    ).hexdigest()
    return Schedule(name, tuple(period_names), season_names, tuple(seasons), digest, table)


def season_index(days: IntArray, schedule: Schedule) -> IntArray:
    """Return the season index (0 = default season) of each local day."""
    out = np.zeros(days.size, dtype=np.int64)
    if not schedule.seasons or days.size == 0:
        return out
    years = days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    unique_years, inverse = np.unique(years, return_inverse=True)
    # Later seasons win only where earlier ones did not match, so the first listed season wins.
    for index in range(len(schedule.seasons), 0, -1):
        season = schedule.seasons[index - 1]
        starts = season.starts.days_in(unique_years)[inverse]
        ends = season.ends.days_in(unique_years)[inverse]
        inside = np.where(starts <= ends, (days >= starts) & (days < ends), (days >= starts) | (days < ends))
        out[inside] = index
    return out


def period_codes(days: IntArray, minutes: IntArray, schedule: Schedule) -> IntArray:
    """Return the period index for local days and minutes of the day."""
    return schedule.table[season_index(days, schedule), weekday(days), minutes]


def _wall_seconds(local_starts: pd.Series | pd.DatetimeIndex | np.ndarray) -> IntArray:
    """Return local wall-clock seconds from naive local datetimes (or the wall time of aware ones)."""
    index = pd.DatetimeIndex(local_starts)
    if index.tz is not None:
        index = index.tz_localize(None)
    return index.as_unit("s").asi8.astype(np.int64)


def tariff_periods(
    local_starts: pd.Series | pd.DatetimeIndex | np.ndarray, schedule: Schedule
) -> ObjectArray:
    """Return the period name in force at each local wall-clock time."""
    wall = _wall_seconds(local_starts)
    days = wall // SECONDS_PER_DAY
    codes = period_codes(days, (wall - days * SECONDS_PER_DAY) // 60, schedule)
    return np.asarray(schedule.period_names, dtype=object)[codes]
