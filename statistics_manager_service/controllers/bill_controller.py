"""The household's bill and the comparison of its tariff options."""

from __future__ import annotations

import datetime as dt

import flask

from statistics_manager_service.app import service_context
from statistics_manager_service.controllers.common import authorized_session_call
from statistics_manager_service.controllers.responses import json_response
from statistics_manager_service.query.bill import bill_request, load_bill
from statistics_manager_service.query.tariff_comparison import comparison_range, load_tariff_comparison
from statistics_manager_service.tariff_loading import updater_for


def bill_get(
    user_id: str, period: str | None = None, billing_day: int | None = None, large_family: bool | None = None
) -> flask.Response:
    """The bill of a billing period with its taxes; an open period also projected to its end."""
    context = service_context()
    now = dt.datetime.now(dt.UTC)
    request = bill_request(user_id, period, billing_day, large_family)
    book, tz = updater_for(context).book, context.settings.default_timezone
    return json_response(authorized_session_call([user_id], load_bill, request, book, tz, now))


def tariff_comparison_get(user_id: str, start_date: str, end_date: str | None = None) -> flask.Response:
    """What the consumption of a range would have cost under every tariff option and power."""
    context = service_context()
    start_s, end_s = comparison_range(start_date, end_date, dt.datetime.now(dt.UTC))
    book, tz = updater_for(context).book, context.settings.default_timezone
    return json_response(
        authorized_session_call([user_id], load_tariff_comparison, user_id, start_s, end_s, book, tz)
    )
