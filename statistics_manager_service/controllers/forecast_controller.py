"""Forecast vs real consumption, and the carbon-intensity forecast."""

from __future__ import annotations

import flask

from statistics_manager_service.app import service_context
from statistics_manager_service.auth import current_principal
from statistics_manager_service.controllers.common import authorized_session_call, cached_session_response
from statistics_manager_service.controllers.responses import json_response
from statistics_manager_service.query.forecast import caller_zone, load_ecosignal, load_forecast_vs_real
from statistics_manager_service.query.pages import household_page
from statistics_manager_service.query.params import parse_day, series_request
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.tariff_loading import updater_for


def power_consumed_real_get(
    user_id: str, start_date: str, group_by: str = "daily", end_date: str | None = None
) -> flask.Response:
    """Measured consumption per bucket (and the forecast when one exists) for one household."""
    request = series_request([user_id], start_date, end_date, group_by)
    statistics = updater_for(service_context())
    # Forecast curves may start anywhere, so the key holds the exact range.
    key = ("real", request.user_ids, request.group_by, request.start_s, request.end_s)
    return cached_session_response(key, request.user_ids, load_forecast_vs_real, request, statistics)


def energy_consumed_forecast_vs_real_get(
    start_date: str,
    user_ids: list[str] | None = None,
    group_by: str = "daily",
    end_date: str | None = None,
    page: int = 1,
    page_size: int = 20,
) -> flask.Response:
    """Forecast vs real per household; without user_ids, every household a service may read, by page."""
    context = service_context()
    with session_scope(context.session_factory) as session:
        ids, total = household_page(session, current_principal(), user_ids, page, page_size)
    if not ids:
        return json_response([], headers={"X-Total-Count": str(total)})
    request = series_request(ids, start_date, end_date, group_by)
    body = authorized_session_call(request.user_ids, load_forecast_vs_real, request, updater_for(context))
    return json_response(body, headers={"X-Total-Count": str(total)})


def ecosignal_forecast_get(
    forecast_day: str, zone: str | None = None, day_boundary: str = "utc"
) -> flask.Response:
    """The carbon intensity of a zone over a UTC (or local) day: forecast, else actual, else shifted."""
    day = parse_day(forecast_day, "forecast_day")
    context = service_context()
    tz = context.settings.default_timezone
    with session_scope(context.session_factory) as session:
        chosen = zone or caller_zone(session, current_principal().user_id, tz)
        return json_response(load_ecosignal(session, day, chosen, tz, day_boundary))
