"""Liveness and readiness probes."""

from __future__ import annotations

import flask

from statistics_manager_service.app import service_context
from statistics_manager_service.controllers.responses import json_response
from statistics_manager_service.readiness import check_readiness


def health_get() -> flask.Response:
    """Answer while the process is alive."""
    return json_response({"status": "ok"})


def ready_get() -> flask.Response:
    """Answer 200 when the database (and broker, when configured) can be reached, else 503."""
    report = check_readiness(service_context())
    return json_response(report.body(), 200 if report.ready else 503)
