"""What every controller does: open the request's session, authorize, serialize."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import flask

from statistics_manager_service.app import service_context
from statistics_manager_service.auth import authorize_users, current_principal
from statistics_manager_service.controllers.responses import json_response
from statistics_manager_service.query.params import series_request
from statistics_manager_service.query.series import METRICS, UserSeries, load_series
from statistics_manager_service.storage.engine import read_call, session_scope

CSV_TYPE = "text/csv"


def wants_csv() -> bool:
    """Tell whether the client prefers CSV over JSON."""
    accept = flask.request.accept_mimetypes
    return (
        accept.best_match(["application/json", CSV_TYPE]) == CSV_TYPE
        and accept[CSV_TYPE] > accept["application/json"]
    )


def csv_response(series: Sequence[UserSeries]) -> flask.Response:
    """One CSV row per household and bucket, for spreadsheets."""
    fields: list[str] = ["user_id"]
    for user_series in series:
        for record in user_series.metrics:
            fields += [key for key in record if key not in fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for user_series in series:
        for record in user_series.metrics:
            writer.writerow({"user_id": user_series.user_id, **record})
    return flask.Response(
        buffer.getvalue(), status=200, mimetype=CSV_TYPE, content_type=f"{CSV_TYPE}; charset=utf-8"
    )


def series_response(
    kind: str,
    user_ids: list[str],
    start_date: str,
    end_date: str | None,
    group_by: str,
    include_quality: bool,
) -> flask.Response:
    """Serve a historic series endpoint."""
    context = service_context()
    request = series_request(user_ids, start_date, end_date, group_by, include_quality)
    authorize_users(current_principal(), request.user_ids)
    series = read_call(context.reads, load_series, request, METRICS[kind], context.settings.default_timezone)
    if wants_csv():
        return csv_response(series)
    return json_response([{"user_id": s.user_id, "metrics": s.metrics} for s in series])


def authorized_session_call(user_ids: Sequence[str], call: Any, *args: Any) -> Any:
    """Authorize the caller for `user_ids`, then run `call(session, *args)` in a request session."""
    authorize_users(current_principal(), user_ids)
    with session_scope(service_context().session_factory) as session:
        return call(session, *args)
