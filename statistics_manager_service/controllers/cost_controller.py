"""Cost, CO2 footprint and the home-screen summary."""

from __future__ import annotations

import datetime as dt

import flask

from statistics_manager_service.aggregation.granularity import BUCKET_SECONDS
from statistics_manager_service.app import service_context
from statistics_manager_service.controllers.common import cached_session_response
from statistics_manager_service.controllers.endpoints import series_endpoint
from statistics_manager_service.query.params import parse_day
from statistics_manager_service.query.summary import load_summary

energy_cost_get = series_endpoint(
    "cost", "Energy cost, fixed cost, export revenue and net cost (EUR) per bucket."
)
co2_footprint_get = series_endpoint(
    "co2", "Emissions of grid imports and emissions avoided by self-consumption (kgCO2eq) per bucket."
)


def statistics_summary_get(user_id: str, date: str | None = None) -> flask.Response:
    """Today's cost, this month's injection, this year's consumption, CO2 and self-sufficiency."""
    day = parse_day(date, "date") if date else None
    tz = service_context().settings.default_timezone
    now = dt.datetime.now(dt.UTC)
    # Without a date the household's local today counts; it can only change on a quarter hour.
    key = ("summary", user_id, day or int(now.timestamp()) // BUCKET_SECONDS)
    return cached_session_response(key, [user_id], load_summary, user_id, day, tz, now)
