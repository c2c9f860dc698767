"""Producer endpoints: validate, queue the event in the outbox, answer 200."""

from __future__ import annotations

import flask

from statistics_manager_service.app import service_context
from statistics_manager_service.controllers.common import authorized_session_call
from statistics_manager_service.controllers.responses import json_response
from statistics_manager_service.event_producers import requests
from statistics_manager_service.exception_handling_utils.errors import BadRequest
from statistics_manager_service.query.params import parse_day, parse_instant
from statistics_manager_service.tariff_loading import updater_for


def _queued(user_id: str, event_type: str, payload: dict[str, object]) -> flask.Response:
    return _relayed(authorized_session_call([user_id], requests.queue_event, event_type, user_id, payload))


def _relayed(body: dict[str, str]) -> flask.Response:
    relay = service_context().relay
    if relay is not None:
        relay.wakeup.set()
    return json_response(body)


def mock_consumption_curve_producer_post(user_id: str, start_date: str, delivery_time: int) -> flask.Response:
    """Ask for a deterministic mock forecast and real curve of the household's day."""
    start = parse_instant(start_date, "start_date")
    return _queued(user_id, requests.MOCK_CURVE_EVENT, requests.mock_curve_payload(start, delivery_time))


def trigger_computed_forecast_producer_post(user_id: str, forecast_day: str) -> flask.Response:
    """Ask for the household's forecast of a day: from the forecast service, else the built-in baseline."""
    day = parse_day(forecast_day, "forecast_day")
    context = service_context()
    baseline_from = None if context.settings.forecast_api_url else updater_for(context)
    return _relayed(authorized_session_call([user_id], requests.queue_forecast, user_id, day, baseline_from))


def users_get_real_data_producer_post(
    user_id: str, start_datetime: str, end_datetime: str | None = None
) -> flask.Response:
    """Ask for the household's statistics over a window to be recomputed from stored readings."""
    start = parse_instant(start_datetime, "start_datetime")
    end = parse_instant(end_datetime, "end_datetime") if end_datetime else None
    if end is not None and end <= start:
        raise BadRequest("start_datetime must be before end_datetime")
    return _queued(user_id, requests.REAL_DATA_EVENT, requests.real_data_payload(start, end))
