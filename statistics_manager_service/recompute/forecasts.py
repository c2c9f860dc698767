"""The built-in baseline forecast of a household's day, from the statistics the engine computes."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.forecasts import (
    BaselineForecast,
    history_days,
    weekday_baseline,
)
from statistics_manager_service.aggregation.granularity import LEVELS
from statistics_manager_service.aggregation.localtime import local_day_bounds
from statistics_manager_service.recompute.updater import StatisticsUpdater
from statistics_manager_service.storage.tables import Household

QUARTER_HOUR_LEVEL = LEVELS[0]


def household_timezone(session: Session, user_id: str, default_timezone: str) -> str:
    """Return the household's time zone (the default for one without its own, or unknown)."""
    household = session.get(Household, user_id)
    return (household.timezone if household is not None else None) or default_timezone


def baseline_forecast(
    session: Session, statistics: StatisticsUpdater, user_id: str, day: dt.date
) -> BaselineForecast:
    """Compute the household's baseline for a local day from its quarter hours of the weeks before."""
    tz = household_timezone(session, user_id, statistics.default_timezone)
    days = history_days(day)
    start_s, _ = local_day_bounds(days[0], tz)
    _, end_s = local_day_bounds(days[-1], tz)
    buckets = statistics.period_statistics(session, [user_id], start_s, end_s, QUARTER_HOUR_LEVEL)
    history = buckets.rename(columns={"period_start": "bucket_start"})
    if "consumption_kwh" not in history.columns:  # no household row, or no readings at all
        history = history.assign(consumption_kwh=float("nan"))
    return weekday_baseline(history, day, tz)
