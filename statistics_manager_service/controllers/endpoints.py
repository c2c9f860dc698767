"""Build the look-alike operation handlers: every historic series and every `-last` reading."""

from __future__ import annotations

from collections.abc import Callable

import flask

from statistics_manager_service.aggregation.compare import CompareTo
from statistics_manager_service.app import service_context
from statistics_manager_service.controllers.common import authorized_session_call, series_response
from statistics_manager_service.controllers.responses import json_response
from statistics_manager_service.query.latest import load_latest

SeriesHandler = Callable[..., flask.Response]


def series_endpoint(kind: str, summary: str) -> SeriesHandler:
    """Return the handler of a historic endpoint reporting the `kind` series."""

    def handler(
        user_ids: list[str],
        start_date: str,
        group_by: str = "daily",
        end_date: str | None = None,
        include_quality: bool = False,
        compare_to: CompareTo | None = None,
    ) -> flask.Response:
        return series_response(kind, user_ids, start_date, end_date, group_by, include_quality, compare_to)

    handler.__doc__ = summary
    return handler


def latest_endpoint(kind: str, summary: str) -> Callable[[list[str]], flask.Response]:
    """Return the handler of an `-last` endpoint reporting the newest `kind` reading."""

    def handler(user_ids: list[str]) -> flask.Response:
        tz = service_context().settings.default_timezone
        return json_response(authorized_session_call(user_ids, load_latest, user_ids, kind, tz))

    handler.__doc__ = summary
    return handler
