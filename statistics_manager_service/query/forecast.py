"""Forecast vs real consumption, and the carbon-intensity forecast of a day."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.granularity import BUCKET_SECONDS
from statistics_manager_service.aggregation.localtime import format_local_iso
from statistics_manager_service.aggregation.rollup import period_starts
from statistics_manager_service.query.params import SeriesRequest
from statistics_manager_service.query.series import METRICS, aligned_starts, load_series
from statistics_manager_service.recompute import StatisticsUpdater
from statistics_manager_service.storage.curves import load_curves
from statistics_manager_service.storage.households import load_households
from statistics_manager_service.storage.signals import load_intensity_with_updates

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


def _utc_text(epoch_s: int) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).isoformat().replace("+00:00", "Z")


def load_ecosignal(session: Session, day: dt.date, zone: str, default_timezone: str) -> list[dict[str, Any]]:
    """Return the zone's carbon intensity over a local day: forecasts, actual values where none."""
    tz = ZoneInfo(ZONE_TIMEZONES.get(zone, default_timezone))
    start_s = int(dt.datetime.combine(day, dt.time(), tz).timestamp())
    end_s = int(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz).timestamp())
    values = load_intensity_with_updates(session, zone, start_s, end_s)
    if values.empty:
        return []
    values = values.assign(rank=(values["kind"] != "forecast").astype(int))
    values = values.sort_values(["ts", "rank"]).drop_duplicates("ts", keep="first")
    return [
        {
            "datetime": _utc_text(ts),
            "request": _utc_text(updated),
            "value": round(value, 4),
            "unit": CO2_UNIT,
            "quality": 0,
            "updated_at": _utc_text(updated),
        }
        for ts, value, updated in zip(
            values["ts"].tolist(), values["value"].tolist(), values["updated_at"].tolist(), strict=True
        )
    ]


def caller_zone(session: Session, user_id: str | None, default_timezone: str) -> str:
    """Return the grid zone of the caller's household, or PT."""
    if user_id is None:
        return "PT"
    frame = load_households(session, [user_id], default_timezone)
    return str(frame["zone"].iloc[0]) if not frame.empty else "PT"
