"""The home-screen summary: today's cost, this month's injection, this year's consumption and CO2."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.localtime import first_of_next_month
from statistics_manager_service.query.series import household_timezones
from statistics_manager_service.storage.periods import load_periods

SUMMARY_COLUMNS = [
    "net_cost_eur",
    "energy_exported_kwh",
    "consumption_kwh",
    "co2_kg",
    "self_consumed_kwh",
    "covered_seconds",
]


def _local_midnight(day: dt.date, zone: ZoneInfo) -> int:
    return int(dt.datetime.combine(day, dt.time(), zone).timestamp())


def _total(rows: pd.DataFrame, column: str) -> float | None:
    """The sum of a column, None when no day of the period has a value (no data is not 0)."""
    total = rows[column].astype("float64").sum(min_count=1)
    return None if pd.isna(total) else float(total)


def _quantity(rows: pd.DataFrame, column: str, units: str, duration_s: int) -> dict[str, Any]:
    """A figure over a period: its value (None without data), unit and the share of the period's
    whole duration backed by readings."""
    value = _total(rows, column)
    covered = float(rows["covered_seconds"].astype("float64").sum())
    return {
        "value": None if value is None else round(value, 6),
        "units": units,
        "coverage": round(min(covered / duration_s, 1.0), 4),
    }


def load_summary(
    session: Session, user_id: str, day: dt.date | None, default_timezone: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Sum the household's daily statistics over the day, month and year containing `day`, and the
    consumption of the whole previous month and of the whole same month a year earlier."""
    tz = household_timezones(session, [user_id], default_timezone)[user_id]
    zone = ZoneInfo(tz)
    day = day or (now or dt.datetime.now(dt.UTC)).astimezone(zone).date()
    day_start = _local_midnight(day, zone)
    day_end = _local_midnight(day + dt.timedelta(days=1), zone)
    month_start = _local_midnight(day.replace(day=1), zone)
    month_end = _local_midnight(first_of_next_month(day), zone)
    year_start = _local_midnight(day.replace(month=1, day=1), zone)
    year_end = _local_midnight(dt.date(day.year + 1, 1, 1), zone)
    first_of_month = day.replace(day=1)
    last_month = (first_of_month - dt.timedelta(days=1)).replace(day=1)
    last_year = first_of_month.replace(year=day.year - 1)
    # Both earlier months lie before this year: one read covers them and the year.
    read_start = _local_midnight(min(last_month, last_year), zone)
    every_day = load_periods(session, [user_id], "daily", read_start, day_end, SUMMARY_COLUMNS)
    rows = every_day[every_day["period_start"] >= year_start]
    starts = rows["period_start"]
    today, month = rows[starts == day_start], rows[starts >= month_start]
    consumption_month = _quantity(month, "consumption_kwh", "kWh", month_end - month_start)
    for name, first in (("previous_month", last_month), ("same_month_last_year", last_year)):
        low, high = _local_midnight(first, zone), _local_midnight(first_of_next_month(first), zone)
        whole = every_day[(every_day["period_start"] >= low) & (every_day["period_start"] < high)]
        consumption_month[name] = _quantity(whole, "consumption_kwh", "kWh", high - low)
    consumption, self_consumed = _total(rows, "consumption_kwh"), _total(rows, "self_consumed_kwh")
    sufficiency = _quantity(rows, "self_consumed_kwh", "ratio", year_end - year_start)
    sufficiency["value"] = (
        round((self_consumed or 0.0) / consumption, 6)
        if consumption is not None and consumption > 0
        else None
    )
    return {
        "user_id": user_id,
        "date": day.isoformat(),
        "timezone": tz,
        "cost_today": _quantity(today, "net_cost_eur", "EUR", day_end - day_start),
        "injection_month": _quantity(month, "energy_exported_kwh", "kWh", month_end - month_start),
        "consumption_month": consumption_month,
        "consumption_year": _quantity(rows, "consumption_kwh", "kWh", year_end - year_start),
        "co2_footprint_year": _quantity(rows, "co2_kg", "kgCO2eq", year_end - year_start),
        "self_sufficiency_year": sufficiency,
    }
