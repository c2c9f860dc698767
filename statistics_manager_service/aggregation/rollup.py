"""Roll 15-minute buckets (or a finer rollup) up to local hours, days, ISO weeks, months, years."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, overload

import numpy as np
import pandas as pd

from statistics_manager_service.aggregation.arrays import (
    BoolArray,
    FloatArray,
    IntArray,
    ObjectArray,
    composite_keys,
    factorize_labels,
    floor_to,
    run_starts,
)
from statistics_manager_service.aggregation.buckets import BUCKET_COLUMNS
from statistics_manager_service.aggregation.granularity import (
    GRANULARITIES,
    SECONDS_PER_DAY,
    SECONDS_PER_HOUR,
    WATT_SECONDS_PER_KWH,
    Granularity,
)
from statistics_manager_service.aggregation.localtime import (
    localize_wall_seconds,
    wall_seconds,
    weekday,
    zone_groups,
)

_SUMMED = (
    "energy_imported_kwh",
    "energy_exported_kwh",
    "energy_generated_kwh",
    "self_consumed_kwh",
    "consumption_kwh",
    "energy_cost_eur",
    "fixed_cost_eur",
    "export_revenue_eur",
    "net_cost_eur",
    "co2_kg",
    "co2_avoided_kg",
)
_COUNTED = ("power_seconds", "voltage_count", "span_seconds", "covered_seconds", "reading_count")
_MAXIMA = ("power_imported_max_w", "power_exported_max_w", "voltage_max_v")
# When the rows carry it: a period was updated when its newest child was.
_NEWEST = "updated_at"
_POWER_MEANS = {
    "power_imported_mean_w": "energy_imported_kwh",
    "power_exported_mean_w": "energy_exported_kwh",
}
# Bucket columns first (as the engine emits them), then cost and CO2.
_OUTPUT_ORDER = (*BUCKET_COLUMNS[2:], *_SUMMED[5:], _NEWEST)


def start_days(days: IntArray, granularity: Granularity) -> IntArray:
    """Return the first local day of the period holding each local day."""
    if granularity == "day":
        return days
    if granularity == "week":
        return days - weekday(days)
    unit = "M" if granularity == "month" else "Y"
    return days.astype("datetime64[D]").astype(f"datetime64[{unit}]").astype("datetime64[D]").astype(np.int64)


def next_start_days(first_days: IntArray, granularity: Granularity) -> IntArray:
    """Return the first local day of the period after each period start day."""
    if granularity == "day":
        return first_days + 1
    if granularity == "week":
        return first_days + 7
    unit = "M" if granularity == "month" else "Y"
    following = first_days.astype("datetime64[D]").astype(f"datetime64[{unit}]") + 1
    return following.astype("datetime64[D]").astype(np.int64)


def _zone_period_starts(instants_s: IntArray, tz: str, granularity: Granularity) -> IntArray:
    """Return the start instant of the local period holding each instant, in one zone."""
    wall = wall_seconds(instants_s, tz)
    if granularity == "hour":
        # Using the instant's own offset keeps the two 01:00 hours of a DST-end day apart.
        return floor_to(wall, SECONDS_PER_HOUR) - (wall - instants_s)
    first_days = start_days(wall // SECONDS_PER_DAY, granularity)
    unique_days, inverse = np.unique(first_days, return_inverse=True)
    return localize_wall_seconds(unique_days * SECONDS_PER_DAY, tz)[inverse]


def period_starts(instants_s: IntArray, zones: ObjectArray, granularity: Granularity) -> IntArray:
    """Return the start instant of the local period holding each instant (one zone per instant)."""
    _check_granularity(granularity)
    out = np.empty(instants_s.size, dtype=np.int64)
    for zone, positions in zone_groups(zones):
        out[positions] = _zone_period_starts(instants_s[positions], zone, granularity)
    return out


@overload
def period_bounds(period_start_s: int, tz: str, granularity: Granularity) -> tuple[int, int]: ...
@overload
def period_bounds(
    period_start_s: IntArray, tz: str, granularity: Granularity
) -> tuple[IntArray, IntArray]: ...
def period_bounds(
    period_start_s: int | IntArray, tz: str, granularity: Granularity
) -> tuple[int, int] | tuple[IntArray, IntArray]:
    """Return [start, end) instants of the local period holding each given instant."""
    _check_granularity(granularity)
    instants = np.atleast_1d(np.asarray(period_start_s, dtype=np.int64))
    if granularity == "hour":
        start = _zone_period_starts(instants, tz, granularity)
        end = start + SECONDS_PER_HOUR
    else:
        first_days = start_days(wall_seconds(instants, tz) // SECONDS_PER_DAY, granularity)
        start = localize_wall_seconds(first_days * SECONDS_PER_DAY, tz)
        end = localize_wall_seconds(next_start_days(first_days, granularity) * SECONDS_PER_DAY, tz)
    if np.ndim(period_start_s) == 0:
        return int(start[0]), int(end[0])
    return start, end


class LocalCalendar(Protocol):
    """Local periods of households whose time zone may change over time (`contracts.Calendars`)."""

    def period_starts(self, users: ObjectArray, instants_s: IntArray, granularity: Granularity) -> IntArray:
        """Return the start of the local period holding each (user, instant)."""
        ...

    def period_ends(self, users: ObjectArray, instants_s: IntArray, granularity: Granularity) -> IntArray:
        """Return the end of the local period holding each (user, instant)."""
        ...


TimeZones = pd.Series | dict[str, str] | LocalCalendar


def _user_period_starts(
    users: ObjectArray, instants_s: IntArray, timezones: TimeZones, granularity: Granularity
) -> IntArray:
    """Return the start of the local period holding each (user, instant)."""
    if isinstance(timezones, pd.Series | dict):
        return period_starts(instants_s, zones_for_users(users, timezones), granularity)
    _check_granularity(granularity)
    return timezones.period_starts(users, instants_s, granularity)


def zones_for_users(users: ObjectArray, timezones: pd.Series | Mapping[str, str]) -> ObjectArray:
    """Return each user's IANA zone, failing loudly for users without one."""
    lookup = timezones if isinstance(timezones, pd.Series) else pd.Series(dict(timezones), dtype=object)
    zones = lookup.reindex(pd.Index(users, dtype=object)).to_numpy(dtype=object)
    missing = users[pd.isna(zones)]
    if missing.size:
        raise ValueError(f"timezones: no time zone for user(s) {', '.join(map(str, missing[:5]))}")
    return zones


def rollup(rows: pd.DataFrame, timezones: TimeZones, granularity: Granularity) -> pd.DataFrame:
    """Roll bucket rows (or finer rollup rows) up to local periods of each user's time zone."""
    _check_granularity(granularity)
    start_column = "period_start" if "period_start" in rows.columns else "bucket_start"
    if start_column not in rows.columns or "user_id" not in rows.columns:
        raise ValueError("rows: need user_id and bucket_start or period_start columns")
    value_columns = [name for name in _OUTPUT_ORDER if name in rows.columns]
    if rows.empty:
        return pd.DataFrame(
            {"user_id": pd.Series(dtype=str), "period_start": pd.Series(dtype=np.int64)}
            | {name: rows[name].iloc[:0] for name in value_columns}
        )
    codes, users = factorize_labels(rows["user_id"])
    starts = rows[start_column].to_numpy(dtype=np.int64)
    # Sorting by (user, start) makes each period a contiguous run, whatever the input order.
    order = np.argsort(composite_keys(codes, starts, int(starts.min())), kind="stable")
    codes, starts = codes[order], starts[order]
    periods = _user_period_starts(users[codes], starts, timezones, granularity)
    group_starts = run_starts(composite_keys(codes, periods, int(periods.min())))
    columns: dict[str, object] = {
        "user_id": users[codes[group_starts]],
        "period_start": periods[group_starts],
    }
    for name in value_columns:
        columns[name] = _reduce(rows, name, order, group_starts)
    return pd.DataFrame(columns)


def _column(rows: pd.DataFrame, name: str, order: IntArray) -> FloatArray:
    """Return a column as float64 in the sorted order."""
    return rows[name].to_numpy(dtype=np.float64, na_value=np.nan)[order]


def _nan_sum(values: FloatArray, group_starts: IntArray) -> FloatArray:
    """Sum each group ignoring NaN; a group with only NaN stays NaN."""
    present = ~np.isnan(values)
    total = np.add.reduceat(np.where(present, values, 0.0), group_starts)
    count = np.add.reduceat(present.astype(np.int64), group_starts)
    return np.where(count > 0, total, np.nan)


def _reduce(rows: pd.DataFrame, name: str, order: IntArray, group_starts: IntArray) -> object:
    """Reduce one column over each group by the rule its meaning calls for."""
    if name in _SUMMED:
        return _nan_sum(_column(rows, name, order), group_starts)
    if name in _COUNTED:
        counted = rows[name].to_numpy(dtype=np.int64)[order]
        return np.add.reduceat(counted, group_starts)
    if name in _MAXIMA:
        return np.fmax.reduceat(_column(rows, name, order), group_starts)
    if name == "voltage_min_v":
        return np.fmin.reduceat(_column(rows, name, order), group_starts)
    if name == "reset_detected":
        flags: BoolArray = rows[name].to_numpy(dtype=bool)[order]
        return np.logical_or.reduceat(flags, group_starts)
    if name == _NEWEST:
        return np.maximum.reduceat(rows[name].to_numpy(dtype=np.int64)[order], group_starts)
    if name == "voltage_mean_v":
        return _weighted_mean(rows, name, "voltage_count", order, group_starts)
    # Power means weigh by the seconds power was known; with none, energy over the span stands in.
    mean_w = _weighted_mean(rows, name, "power_seconds", order, group_starts)
    if _POWER_MEANS[name] in rows.columns and "span_seconds" in rows.columns:
        energy_kwh = _nan_sum(_column(rows, _POWER_MEANS[name], order), group_starts)
        span_s = np.add.reduceat(rows["span_seconds"].to_numpy(dtype=np.float64)[order], group_starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            fallback_w = energy_kwh * WATT_SECONDS_PER_KWH / span_s
        mean_w = np.where(np.isnan(mean_w), fallback_w, mean_w)
    return mean_w


def _weighted_mean(
    rows: pd.DataFrame, name: str, weight: str, order: IntArray, group_starts: IntArray
) -> FloatArray:
    """Return the weight-averaged column per group, NaN where the weights sum to zero."""
    if weight not in rows.columns:
        return np.full(group_starts.size, np.nan)
    values = _column(rows, name, order)
    weights = rows[weight].to_numpy(dtype=np.float64)[order]
    weights = np.where(np.isnan(values), 0.0, weights)
    weighted = np.add.reduceat(np.where(weights > 0, values * weights, 0.0), group_starts)
    total = np.add.reduceat(weights, group_starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weighted / total, np.nan)


def covering_periods(windows: pd.DataFrame, timezones: TimeZones, granularity: Granularity) -> pd.DataFrame:
    """Return, per (user_id, start_s, end_s) window, the [start_s, end_s) of the local periods that
    overlap it: from the start of the period holding its start to the end of the one holding its
    last instant."""
    if not isinstance(timezones, pd.Series | dict):
        users = windows["user_id"].to_numpy(dtype=object)
        _check_granularity(granularity)
        return pd.DataFrame(
            {
                "user_id": users,
                "start_s": timezones.period_starts(users, windows["start_s"].to_numpy(np.int64), granularity),
                "end_s": timezones.period_ends(users, windows["end_s"].to_numpy(np.int64) - 1, granularity),
            }
        )
    zones = zones_for_users(windows["user_id"].to_numpy(dtype=object), timezones)
    starts = period_starts(windows["start_s"].to_numpy(dtype=np.int64), zones, granularity)
    last_starts = period_starts(windows["end_s"].to_numpy(dtype=np.int64) - 1, zones, granularity)
    ends = np.empty_like(last_starts)
    for zone, positions in zone_groups(zones):
        _, ends[positions] = period_bounds(last_starts[positions], zone, granularity)
    return pd.DataFrame({"user_id": windows["user_id"].to_numpy(), "start_s": starts, "end_s": ends})


def _check_granularity(granularity: str) -> None:
    """Reject an unknown granularity with a clear message."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity: expected one of {', '.join(GRANULARITIES)}, got {granularity!r}")
