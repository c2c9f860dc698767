"""The household's always-on power."""

from __future__ import annotations

import datetime as dt

import flask

from statistics_manager_service.app import service_context
from statistics_manager_service.controllers.common import authorized_session_call
from statistics_manager_service.controllers.responses import json_response
from statistics_manager_service.query.baseload import load_baseload
from statistics_manager_service.query.params import parse_range
from statistics_manager_service.tariff_loading import updater_for

MAX_BASELOAD_DAYS = 400


def baseload_get(user_id: str, start_date: str, end_date: str | None = None) -> flask.Response:
    """The baseload estimated from the range's nights, its share of consumption and its yearly cost."""
    now = dt.datetime.now(dt.UTC)
    range_s = parse_range(start_date, end_date, now, MAX_BASELOAD_DAYS)
    statistics = updater_for(service_context())
    return json_response(
        authorized_session_call([user_id], load_baseload, user_id, *range_s, statistics, now)
    )
