"""Energy consumption and injection endpoints."""

from __future__ import annotations

import flask

from statistics_manager_service.app import service_context
from statistics_manager_service.controllers.common import authorized_session_call, series_response
from statistics_manager_service.controllers.responses import json_response
from statistics_manager_service.query.latest import load_latest


def energy_consumption_get(
    user_ids: list[str],
    start_date: str,
    group_by: str = "daily",
    end_date: str | None = None,
    include_quality: bool = False,
) -> flask.Response:
    """Consumption (grid import + self-consumed generation) per bucket."""
    return series_response("consumption", user_ids, start_date, end_date, group_by, include_quality)


def energy_injection_get(
    user_ids: list[str],
    start_date: str,
    group_by: str = "daily",
    end_date: str | None = None,
    include_quality: bool = False,
) -> flask.Response:
    """Injection (grid export) per bucket."""
    return series_response("injection", user_ids, start_date, end_date, group_by, include_quality)


def energy_consumption_last_get(user_ids: list[str]) -> flask.Response:
    """The newest consumption register (kWh) per household."""
    tz = service_context().settings.default_timezone
    return json_response(authorized_session_call(user_ids, load_latest, user_ids, "energy_consumption", tz))


def energy_injection_last_get(user_ids: list[str]) -> flask.Response:
    """The newest export register (kWh) per household."""
    tz = service_context().settings.default_timezone
    return json_response(authorized_session_call(user_ids, load_latest, user_ids, "energy_injection", tz))
