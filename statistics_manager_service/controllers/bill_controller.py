"""The household's bill and the comparison of its tariff options."""

from __future__ import annotations

import datetime as dt

import flask

from statistics_manager_service.aggregation.billing import LAST_BILLING_DAY
from statistics_manager_service.aggregation.granularity import BUCKET_SECONDS
from statistics_manager_service.app import service_context
from statistics_manager_service.auth import authorize_users, current_principal
from statistics_manager_service.controllers.common import cached_json_response
from statistics_manager_service.query.bill import bill_request, load_bill_inputs, price_bill
from statistics_manager_service.query.bill_terms import BillRequest
from statistics_manager_service.query.notifications import PRICES_CHANGED
from statistics_manager_service.query.tariff_comparison import (
    compare_tariffs,
    comparison_range,
    load_comparison_inputs,
)
from statistics_manager_service.storage.engine import read_call
from statistics_manager_service.tariff_loading import updater_for

# A period ends on a local midnight, at most a day after the same UTC date's: from then on it is
# closed in every time zone, and its bill no longer depends on the time of the request.
_CLOSED_FOR_SURE = dt.timedelta(days=2)


def _closed_for_sure(request: BillRequest, now: dt.datetime) -> bool:
    """Whether the period has ended whatever the household's time zone and billing day."""
    if request.year is None or request.month is None:
        return False  # the current period
    following = dt.date(request.year, request.month, 1) + dt.timedelta(days=32)
    # It ends in the next month, on the billing day in force then (the request's, if it sets one).
    last_day = LAST_BILLING_DAY if request.billing_day is None else request.billing_day
    end = dt.datetime(following.year, following.month, last_day, tzinfo=dt.UTC)
    return now >= end + _CLOSED_FOR_SURE


def bill_get(
    user_id: str, period: str | None = None, billing_day: int | None = None, large_family: bool | None = None
) -> flask.Response:
    """The bill of a billing period with its taxes; an open period also projected to its end.

    The inputs are read in one short session and the bill is priced after it is given back; the
    answer is kept in the response cache until the household's data, its contract or any zone's
    prices change (an open period's answer for the current quarter hour only: its projection moves
    with the clock)."""
    context = service_context()
    now = dt.datetime.now(dt.UTC)
    request = bill_request(user_id, period, billing_day, large_family)
    authorize_users(current_principal(), [user_id])
    book, tz = updater_for(context).book, context.settings.default_timezone
    clock = None if _closed_for_sure(request, now) else int(now.timestamp()) // BUCKET_SECONDS
    key = ("bill", user_id, request.year, request.month, billing_day, large_family, clock)

    def body() -> object:
        span, inputs = read_call(context.reads, load_bill_inputs, request, tz, now)
        return price_bill(span, inputs, request, book)

    # A bill prices its quarter hours at request time: a dynamic tariff's with the zone's prices.
    return cached_json_response(key, [user_id, PRICES_CHANGED], body)


def tariff_comparison_get(user_id: str, start_date: str, end_date: str | None = None) -> flask.Response:
    """What the consumption of a range would have cost under every tariff option and power.

    Read in one short session, computed after it; cached until the household's data or any
    zone's energy prices change (the dynamic option is priced by them whatever the contract)."""
    context = service_context()
    start_s, end_s = comparison_range(start_date, end_date, dt.datetime.now(dt.UTC))
    authorize_users(current_principal(), [user_id])
    book, tz = updater_for(context).book, context.settings.default_timezone
    key = ("tariff-comparison", user_id, start_s, end_s)

    def body() -> object:
        inputs = read_call(context.reads, load_comparison_inputs, user_id, start_s, end_s, tz)
        return compare_tariffs(inputs, start_s, end_s, book)

    return cached_json_response(key, [user_id, PRICES_CHANGED], body)
