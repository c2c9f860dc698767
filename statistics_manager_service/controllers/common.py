"""What every controller does: open the request's session, authorize, serialize."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Sequence
from typing import Any

import flask

from statistics_manager_service import metrics
from statistics_manager_service.aggregation.compare import CompareTo
from statistics_manager_service.aggregation.granularity import BUCKET_SECONDS
from statistics_manager_service.app import service_context
from statistics_manager_service.auth import authorize_users, current_principal
from statistics_manager_service.controllers.responses import json_body_response, json_response
from statistics_manager_service.query.compare import compared_fields, load_compared_series
from statistics_manager_service.query.params import SeriesRequest, series_request
from statistics_manager_service.query.series import METRICS, UserSeries, load_series, record_fields
from statistics_manager_service.storage.engine import read_call, session_scope
from statistics_manager_service.tariff_loading import updater_for

CSV_TYPE = "text/csv"


def wants_csv() -> bool:
    """Tell whether the client prefers CSV over JSON."""
    accept = flask.request.accept_mimetypes
    return (
        accept.best_match(["application/json", CSV_TYPE]) == CSV_TYPE
        and accept[CSV_TYPE] > accept["application/json"]
    )


def csv_response(series: Sequence[UserSeries], fields: Sequence[str], file_name: str) -> flask.Response:
    """One CSV row per household and bucket, for spreadsheets: the whole header even without rows,
    booleans as `true`/`false`, missing values empty, offered as a download named `file_name`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["user_id", *fields])
    for user_series in series:
        for record in user_series.metrics:
            writer.writerow([user_series.user_id, *(_csv_value(record.get(name)) for name in fields)])
    return flask.Response(
        buffer.getvalue(),
        status=200,
        mimetype=CSV_TYPE,
        content_type=f"{CSV_TYPE}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{file_name}"'},
    )


def _csv_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def csv_file_name(kind: str, request: SeriesRequest) -> str:
    """`<kind>_<group_by>_<first UTC day>_<last UTC day>.csv`."""
    first = dt.datetime.fromtimestamp(request.start_s, dt.UTC).date()
    last = dt.datetime.fromtimestamp(max(request.end_s - 1, request.start_s), dt.UTC).date()
    return f"{kind.replace('_', '-')}_{request.group_by}_{first.isoformat()}_{last.isoformat()}.csv"


def series_response(
    kind: str,
    user_ids: list[str],
    start_date: str,
    end_date: str | None,
    group_by: str,
    include_quality: bool,
    compare_to: CompareTo | None = None,
) -> flask.Response:
    """Serve a historic series endpoint, with each bucket's earlier bucket when `compare_to` is given."""
    context = service_context()
    request = series_request(user_ids, start_date, end_date, group_by, include_quality)
    authorize_users(current_principal(), request.user_ids)
    statistics = updater_for(context)
    metric = METRICS[kind]

    def read(flat: bool) -> list[UserSeries]:
        if compare_to is None:
            return read_call(context.reads, load_series, request, metric, statistics)
        return read_call(context.reads, load_compared_series, request, metric, statistics, compare_to, flat)

    if wants_csv():
        fields = record_fields(metric, request.include_quality)
        fields += compared_fields(metric) if compare_to else []
        return csv_response(read(True), fields, csv_file_name(kind, request))

    def body() -> Any:
        return [{"user_id": s.user_id, "metrics": s.metrics} for s in read(False)]

    return cached_json_response(series_key(kind, request, compare_to), request.user_ids, body)


def series_key(kind: str, request: SeriesRequest, compare_to: str | None = None) -> tuple[object, ...]:
    """What a series body depends on besides the stored statistics.

    Periods start on multiples of 15 minutes (every time zone's offset has been a multiple of 15
    minutes since 2000, the earliest reading accepted), so every end within one quarter hour
    selects the same periods: an open-ended request (end = now) keeps one key per quarter hour.
    """
    end_quarter = -(-request.end_s // BUCKET_SECONDS)
    quality = request.include_quality
    return (kind, request.user_ids, request.group_by, request.start_s, end_quarter, quality, compare_to)


def cached_json_response(
    key: tuple[object, ...], user_ids: Sequence[str], body: Callable[[], Any]
) -> flask.Response:
    """Answer from the response cache, or serialize `body()` and keep it until `user_ids` change.

    `key` must hold everything the body depends on besides the households' stored data.
    """
    cache = service_context().series_cache()
    if cache is None:
        return json_response(body())
    cached = cache.get(key)
    metrics.RESPONSE_CACHE_REQUESTS.labels("hit" if cached else "miss" if cache.live else "bypass").inc()
    if cached is not None:
        return json_body_response(cached)
    token = cache.token(user_ids)  # before the read: a change announced meanwhile keeps it out
    response = json_response(body())
    cache.put(key, user_ids, token, response.get_data())
    return response


def authorized_session_call(user_ids: Sequence[str], call: Any, *args: Any) -> Any:
    """Authorize the caller for `user_ids`, then run `call(session, *args)` in a request session."""
    authorize_users(current_principal(), user_ids)
    return _session_call(call, *args)


def cached_session_response(
    key: tuple[object, ...], user_ids: Sequence[str], call: Any, *args: Any
) -> flask.Response:
    """`authorized_session_call` answered as JSON through the response cache (see `cached_json_response`)."""
    authorize_users(current_principal(), user_ids)
    return cached_json_response(key, user_ids, lambda: _session_call(call, *args))


def _session_call(call: Any, *args: Any) -> Any:
    with session_scope(service_context().session_factory) as session:
        return call(session, *args)
