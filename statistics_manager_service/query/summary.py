"""The home-screen summary: today's cost, this month's injection, this year's consumption and CO2."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from statistics_manager_service.query.series import household_timezones
from statistics_manager_service.storage.periods import load_periods

SUMMARY_COLUMNS = ["net_cost_eur", "energy_exported_kwh", "consumption_kwh", "co2_kg", "self_consumed_kwh"]


def _local_midnight(day: dt.date, zone: ZoneInfo) -> int:
    return int(dt.datetime.combine(day, dt.time(), zone).timestamp())


def _quantity(value: float | None, units: str) -> dict[str, Any]:
    return {"value": None if value is None else round(value, 6), "units": units}


def load_summary(
    session: Session, user_id: str, day: dt.date | None, default_timezone: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Sum the household's daily statistics over the day, month and year containing `day`."""
    tz = household_timezones(session, [user_id], default_timezone)[user_id]
    zone = ZoneInfo(tz)
    day = day or (now or dt.datetime.now(dt.UTC)).astimezone(zone).date()
    day_start = _local_midnight(day, zone)
    day_end = _local_midnight(day + dt.timedelta(days=1), zone)
    month_start = _local_midnight(day.replace(day=1), zone)
    year_start = _local_midnight(day.replace(month=1, day=1), zone)
    rows = load_periods(session, [user_id], "daily", year_start, day_end, SUMMARY_COLUMNS)
    starts = rows["period_start"]
    consumption = float(rows["consumption_kwh"].sum())
    self_consumed = float(rows["self_consumed_kwh"].sum())
    return {
        "user_id": user_id,
        "date": day.isoformat(),
        "timezone": tz,
        "cost_today": _quantity(float(rows.loc[starts == day_start, "net_cost_eur"].sum()), "EUR"),
        "injection_month": _quantity(
            float(rows.loc[starts >= month_start, "energy_exported_kwh"].sum()), "kWh"
        ),
        "consumption_year": _quantity(consumption, "kWh"),
        "co2_footprint_year": _quantity(float(rows["co2_kg"].sum()), "kgCO2eq"),
        "self_sufficiency_year": _quantity(self_consumed / consumption if consumption > 0 else None, "ratio"),
    }
