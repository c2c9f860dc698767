"""Producer endpoints: validate, limit the caller, queue the event in the outbox, answer 200."""

from __future__ import annotations

import flask

from statistics_manager_service.app import service_context
from statistics_manager_service.auth import current_principal
from statistics_manager_service.controllers.common import authorized_session_call
from statistics_manager_service.controllers.responses import json_response
from statistics_manager_service.event_producers import requests
from statistics_manager_service.exception_handling_utils.errors import BadRequest, TooManyRequests
from statistics_manager_service.query.params import parse_day, parse_instant
from statistics_manager_service.tariff_loading import updater_for


def _limit_caller() -> None:
    """Refuse a caller past its share of producer calls (per token subject, else per address)."""
    limiter = service_context().producer_limiter()
    if limiter is None:
        return
    principal = current_principal()
    caller = f"user:{principal.user_id}" if principal.user_id else f"address:{flask.request.remote_addr}"
    retry_after_s = limiter.take(caller)
    if retry_after_s:
        per_minute = service_context().settings.producer_rate_limit_per_minute
        raise TooManyRequests(
            f"too many producer requests: at most {per_minute} a minute after a burst;"
            f" retry after {retry_after_s} s",
            retry_after_s,
        )


def _queued(call: object, user_id: str, *args: object) -> flask.Response:
    _limit_caller()
    settings = service_context().settings
    # Debezium mode keeps published rows in the outbox: a queued row may be long gone downstream.
    coalesce = not settings.debezium_outbox
    body = authorized_session_call([user_id], call, *args, coalesce)
    relay = service_context().relay
    if relay is not None:
        relay.wakeup.set()
    return json_response(body)


def mock_consumption_curve_producer_post(user_id: str, start_date: str, delivery_time: int) -> flask.Response:
    """Ask for a deterministic mock forecast and real curve of the household's day."""
    start = parse_instant(start_date, "start_date")
    payload = requests.mock_curve_payload(start, delivery_time)
    return _queued(requests.queue_event, user_id, requests.MOCK_CURVE_EVENT, user_id, payload)


def trigger_computed_forecast_producer_post(user_id: str, forecast_day: str) -> flask.Response:
    """Ask for the household's forecast of a day: from the forecast service, else the built-in baseline."""
    day = parse_day(forecast_day, "forecast_day")
    context = service_context()
    baseline_from = None if context.settings.forecast_api_url else updater_for(context)
    return _queued(requests.queue_forecast, user_id, user_id, day, baseline_from)


def users_get_real_data_producer_post(
    user_id: str, start_datetime: str, end_datetime: str | None = None
) -> flask.Response:
    """Ask for the household's statistics over a window (clipped to its readings) to be recomputed."""
    start = parse_instant(start_datetime, "start_datetime")
    end = parse_instant(end_datetime, "end_datetime") if end_datetime else None
    if end is not None and end <= start:
        raise BadRequest("start_datetime must be before end_datetime")
    return _queued(requests.queue_real_data_request, user_id, user_id, start, end)
