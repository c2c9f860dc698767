"""Forecast vs real consumption, and the carbon-intensity forecast of a day."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.granularity import BUCKET_SECONDS
from statistics_manager_service.aggregation.localtime import format_local_iso, utc_text
from statistics_manager_service.aggregation.rollup import period_starts
from statistics_manager_service.query.params import SeriesRequest
from statistics_manager_service.query.series import METRICS, aligned_starts, load_series
from statistics_manager_service.recompute import StatisticsUpdater
from statistics_manager_service.storage.curves import load_curves
from statistics_manager_service.storage.households import load_households
from statistics_manager_service.storage.signals import (
    MAX_RESOLUTION_S,
    load_intensity_with_updates,
    nearest_intensity_day,
)

# The time zone of a grid zone's calendar day, for zones this service knows.
ZONE_TIMEZONES = {"PT": "Europe/Lisbon", "ES": "Europe/Madrid", "FR": "Europe/Paris", "DE": "Europe/Berlin"}
CO2_UNIT = "gCO₂eq/kWh"
# The origin of a forecast bucket whose values come from more than one origin.
MIXED_ORIGIN = "mixed"


def _curve_series(
    curves: pd.DataFrame, request: SeriesRequest, zones: dict[str, str], starts: dict[str, int]
) -> dict[str, list[dict[str, Any]]]:
    """Sum curve values into the request's local buckets, per user."""
    result: dict[str, list[dict[str, Any]]] = {user_id: [] for user_id in request.user_ids}
    if curves.empty:
        return result
    instants = curves["ts"].to_numpy(dtype=np.int64)
    user_zones = curves["user_id"].map(zones).to_numpy(dtype=object)
    granularity = request.engine_granularity
    buckets = (
        instants // BUCKET_SECONDS * BUCKET_SECONDS
        if granularity is None
        else period_starts(instants, user_zones, granularity)
    )
    summed = (
        pd.DataFrame(
            {
                "user_id": curves["user_id"].to_numpy(),
                "bucket": buckets,
                "energy": curves["energy_kwh"].to_numpy(),
                "origin": curves["origin"].to_numpy(),
            }
        )
        .groupby(["user_id", "bucket"], as_index=False, sort=True)
        .agg(energy=("energy", "sum"), origin=("origin", "first"), origins=("origin", "nunique"))
    )
    summed["origin"] = summed["origin"].where(summed["origins"] == 1, MIXED_ORIGIN)
    summed = summed[summed["bucket"].to_numpy() >= summed["user_id"].map(starts).to_numpy(dtype=np.int64)]
    stamps = format_local_iso(
        summed["bucket"].to_numpy(dtype=np.int64), summed["user_id"].map(zones).to_numpy(dtype=object)
    )
    for user_id, stamp, energy, origin in zip(
        summed["user_id"].tolist(),
        stamps.tolist(),
        summed["energy"].tolist(),
        summed["origin"].tolist(),
        strict=True,
    ):
        items = result[user_id]
        items.append(
            {
                "timestamp": stamp,
                "energy": round(energy, 6),
                "units": "kWh",
                "slot_number": len(items) + 1,
                "origin": origin,
            }
        )
    return result


def load_forecast_vs_real(
    session: Session, request: SeriesRequest, statistics: StatisticsUpdater
) -> list[dict[str, Any]]:
    """Return measured consumption (or the mock real curve) beside the stored forecast, per user."""
    real = load_series(session, request, METRICS["real_energy"], statistics)
    zones = {series.user_id: series.timezone for series in real}
    starts = aligned_starts(request.start_s, zones, request.engine_granularity)
    lowest = min(starts.values())
    forecast = _curve_series(
        load_curves(session, request.user_ids, "forecast", lowest, request.end_s), request, zones, starts
    )
    missing = [series.user_id for series in real if not series.metrics]
    mock = (
        _curve_series(
            load_curves(session, missing, "mock_real", lowest, request.end_s), request, zones, starts
        )
        if missing
        else {}
    )
    return [
        {
            "user_id": series.user_id,
            "forecast": forecast[series.user_id],
            "real": series.metrics or mock.get(series.user_id, []),
        }
        for series in real
    ]


# `quality` of an ecosignal item: the day's own value, a value of another day shifted onto the
# requested day (the day is not published yet), or the nearest value of the answer (a hole).
QUALITY_OWN, QUALITY_SHIFTED, QUALITY_FILLED = 0, 1, 2
_FINE_STEP_S = 900
_HOURLY_STEP_S = 3600


def _day_clock(zone: str, default_timezone: str, boundary: str) -> dt.tzinfo:
    """The clock an ecosignal day is read on: UTC (as the FlexiHome service answered), or the grid
    zone's local time (`boundary` "local")."""
    return ZoneInfo(ZONE_TIMEZONES.get(zone, default_timezone)) if boundary == "local" else dt.UTC


def ecosignal_day_range(day: dt.date, zone: str, default_timezone: str, boundary: str) -> tuple[int, int]:
    """Return the [start, end) epoch seconds of `day` in UTC or in the zone's local calendar."""
    tz = _day_clock(zone, default_timezone, boundary)
    start = dt.datetime.combine(day, dt.time(), tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz)
    return int(start.timestamp()), int(end.timestamp())


def covering_values(values: pd.DataFrame, instants: np.ndarray) -> pd.DataFrame:
    """For each instant, the stored value holding at it: a forecast before an actual value.

    Returns `ts` (the start of the value's interval, -1 where none holds), `value` and
    `updated_at`, one row per instant.
    """
    found_ts = np.full(instants.size, -1, dtype=np.int64)
    found_value = np.full(instants.size, np.nan)
    found_updated = np.zeros(instants.size, dtype=np.int64)
    for kind in ("actual", "forecast"):  # a forecast overrides an actual value
        of_kind = values[values["kind"] == kind].sort_values("ts")
        if of_kind.empty:
            continue
        ts = of_kind["ts"].to_numpy(dtype=np.int64)
        ends = ts + of_kind["resolution_s"].to_numpy(dtype=np.int64)
        at = np.searchsorted(ts, instants, side="right") - 1
        holds = (at >= 0) & (instants < ends[np.maximum(at, 0)])
        chosen = at[holds]
        found_ts[holds] = ts[chosen]
        found_value[holds] = of_kind["value"].to_numpy(dtype=np.float64)[chosen]
        found_updated[holds] = of_kind["updated_at"].to_numpy(dtype=np.int64)[chosen]
    return pd.DataFrame({"ts": found_ts, "value": found_value, "updated_at": found_updated})


def _step_of(values: pd.DataFrame) -> int:
    """Quarter hours when the finest value holds for 15 minutes or less, else hours."""
    if values.empty:
        return _HOURLY_STEP_S
    return _FINE_STEP_S if int(values["resolution_s"].min()) <= _FINE_STEP_S else _HOURLY_STEP_S


def load_ecosignal(
    session: Session, day: dt.date, zone: str, default_timezone: str, boundary: str = "utc"
) -> list[dict[str, Any]]:
    """Return a zone's carbon intensity over a day, one item per hour (or quarter hour when the
    source is that fine), never fewer while any value of the zone is stored.

    Intervals of the day take its own values (forecast before actual, quality 0). When the day is
    not published yet, or only partly, the missing intervals take the values at the same time of
    the most recent earlier day with data (the earliest later day when there is none), quality 1;
    intervals still missing take the nearest value of the answer, quality 2. Every item carries the
    newest update time of the values used, so that the answer reads as one forecast run.
    """
    start_s, end_s = ecosignal_day_range(day, zone, default_timezone, boundary)
    own = load_intensity_with_updates(session, zone, start_s - MAX_RESOLUTION_S, end_s)
    own = own[own["ts"].to_numpy() + own["resolution_s"].to_numpy() > start_s]
    other = own.iloc[0:0]
    source_start = start_s
    slots = _slots(start_s, end_s, _step_of(own))
    chosen = covering_values(own, slots)
    if (chosen["ts"].to_numpy() < 0).any():
        nearest = nearest_intensity_day(session, zone, start_s, end_s)
        if nearest is not None:
            source_day = dt.datetime.fromtimestamp(
                nearest, _day_clock(zone, default_timezone, boundary)
            ).date()
            source_start, source_end = ecosignal_day_range(source_day, zone, default_timezone, boundary)
            other = load_intensity_with_updates(session, zone, source_start - MAX_RESOLUTION_S, source_end)
            if own.empty:
                slots = _slots(start_s, end_s, _step_of(other))
                chosen = covering_values(own, slots)
    quality = np.where(chosen["ts"].to_numpy() >= 0, QUALITY_OWN, -1)
    missing = np.flatnonzero(quality < 0)
    if missing.size and not other.empty:
        shifted = covering_values(other, slots[missing] - start_s + source_start)
        found = shifted["ts"].to_numpy() >= 0
        chosen.iloc[missing[found]] = shifted[found].to_numpy()
        quality[missing[found]] = QUALITY_SHIFTED
    known = np.flatnonzero(quality >= 0)
    if known.size == 0:
        return []
    holes = np.flatnonzero(quality < 0)
    if holes.size:
        nearest_known = known[np.abs(known[None, :] - holes[:, None]).argmin(axis=1)]
        chosen.iloc[holes] = chosen.iloc[nearest_known].to_numpy()
        quality[holes] = QUALITY_FILLED
    updated_at = utc_text(int(chosen["updated_at"].max()))
    return [
        {
            "datetime": utc_text(slot),
            "request": utc_text(updated),
            "value": round(value, 4),
            "unit": CO2_UNIT,
            "quality": grade,
            "updated_at": updated_at,
            "source_datetime": utc_text(source),
        }
        for slot, source, value, updated, grade in zip(
            slots.tolist(),
            chosen["ts"].astype("int64").tolist(),
            chosen["value"].tolist(),
            chosen["updated_at"].astype("int64").tolist(),
            quality.tolist(),
            strict=True,
        )
    ]


def _slots(start_s: int, end_s: int, step_s: int) -> np.ndarray:
    return np.arange(start_s, end_s, step_s, dtype=np.int64)


def caller_zone(session: Session, user_id: str | None, default_timezone: str) -> str:
    """Return the grid zone of the caller's household, or PT."""
    if user_id is None:
        return "PT"
    frame = load_households(session, [user_id], default_timezone)
    return str(frame["zone"].iloc[0]) if not frame.empty else "PT"
