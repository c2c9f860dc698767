"""Voltage endpoints: mean, min and max per bucket, and the newest reading."""

from __future__ import annotations

import flask

from statistics_manager_service.app import service_context
from statistics_manager_service.controllers.common import authorized_session_call, series_response
from statistics_manager_service.controllers.responses import json_response
from statistics_manager_service.query.latest import load_latest


def voltage_get(
    user_ids: list[str],
    start_date: str,
    group_by: str = "daily",
    end_date: str | None = None,
    include_quality: bool = False,
) -> flask.Response:
    """Voltage mean, min and max per bucket."""
    return series_response("voltage", user_ids, start_date, end_date, group_by, include_quality)


def voltage_last_get(user_ids: list[str]) -> flask.Response:
    """The newest voltage reading per household."""
    tz = service_context().settings.default_timezone
    return json_response(authorized_session_call(user_ids, load_latest, user_ids, "voltage", tz))
