"""The household's always-on power."""

from __future__ import annotations

import datetime as dt

import flask

from statistics_manager_service.app import service_context
from statistics_manager_service.controllers.common import authorized_session_call
from statistics_manager_service.controllers.responses import json_response
from statistics_manager_service.exception_handling_utils.errors import BadRequest
from statistics_manager_service.query.baseload import load_baseload
from statistics_manager_service.query.params import parse_instant
from statistics_manager_service.tariff_loading import updater_for

MAX_BASELOAD_DAYS = 400


def baseload_get(user_id: str, start_date: str, end_date: str | None = None) -> flask.Response:
    """The baseload estimated from the range's nights, its share of consumption and its yearly cost."""
    now = dt.datetime.now(dt.UTC)
    start = parse_instant(start_date, "start_date")
    end = parse_instant(end_date, "end_date") if end_date else now
    if start >= end:
        raise BadRequest("start_date must be before end_date")
    if end - start > dt.timedelta(days=MAX_BASELOAD_DAYS):
        raise BadRequest(
            f"start_date and end_date must be at most {MAX_BASELOAD_DAYS} days apart; narrow the range"
        )
    statistics = updater_for(service_context())
    range_s = (int(start.timestamp()), int(end.timestamp()))
    return json_response(
        authorized_session_call([user_id], load_baseload, user_id, *range_s, statistics, now)
    )
