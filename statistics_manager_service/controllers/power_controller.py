"""Power endpoints: mean and peak per bucket, and the newest reading."""

from __future__ import annotations

import flask

from statistics_manager_service.app import service_context
from statistics_manager_service.controllers.common import authorized_session_call, series_response
from statistics_manager_service.controllers.responses import json_response
from statistics_manager_service.query.latest import load_latest


def power_consumption_get(
    user_ids: list[str],
    start_date: str,
    group_by: str = "daily",
    end_date: str | None = None,
    include_quality: bool = False,
) -> flask.Response:
    """Mean (and peak) import power per bucket."""
    return series_response("power_consumption", user_ids, start_date, end_date, group_by, include_quality)


def power_injection_get(
    user_ids: list[str],
    start_date: str,
    group_by: str = "daily",
    end_date: str | None = None,
    include_quality: bool = False,
) -> flask.Response:
    """Mean (and peak) export power per bucket."""
    return series_response("power_injection", user_ids, start_date, end_date, group_by, include_quality)


def power_consumption_last_get(user_ids: list[str]) -> flask.Response:
    """The newest import power reading per household."""
    tz = service_context().settings.default_timezone
    return json_response(authorized_session_call(user_ids, load_latest, user_ids, "power_consumption", tz))


def power_injection_last_get(user_ids: list[str]) -> flask.Response:
    """The newest export power reading per household."""
    tz = service_context().settings.default_timezone
    return json_response(authorized_session_call(user_ids, load_latest, user_ids, "power_injection", tz))
