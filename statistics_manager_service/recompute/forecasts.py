"""The built-in baseline forecast of a household's day, from the statistics the engine computes."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.forecasts import (
    BaselineForecast,
    history_days,
    weekday_baseline,
)
from statistics_manager_service.aggregation.localtime import local_day_bounds
from statistics_manager_service.recompute.updater import StatisticsUpdater
from statistics_manager_service.recompute.views import (
    load_household_contracts,
    load_quarter_hour_inputs,
    quarter_hours,
)


def baseline_forecast(
    session: Session, statistics: StatisticsUpdater, user_id: str, day: dt.date
) -> BaselineForecast:
    """Compute the household's baseline for a local day from its quarter hours of the weeks before
    (the default time zone for a household without its own, or unknown)."""
    known = load_household_contracts(session, statistics.default_timezone, user_id)
    tz = (known.household.timezone if known.household is not None else None) or statistics.default_timezone
    days = history_days(day)
    start_s, _ = local_day_bounds(days[0], tz)
    _, end_s = local_day_bounds(days[-1], tz)
    inputs = load_quarter_hour_inputs(session, statistics.default_timezone, user_id, start_s, end_s, known)
    history = quarter_hours(inputs)
    if "consumption_kwh" not in history.columns:  # no household row, or no readings at all
        history = history.assign(consumption_kwh=float("nan"))
    return weekday_baseline(history, day, tz)
