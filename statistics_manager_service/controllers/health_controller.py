"""Liveness and readiness probes, and the running build."""

from __future__ import annotations

import flask

from statistics_manager_service.app import service_context
from statistics_manager_service.build import build_info
from statistics_manager_service.controllers.responses import json_response
from statistics_manager_service.readiness import check_readiness


def health_get() -> flask.Response:
    """Answer while the process is alive."""
    return json_response({"status": "ok"})


def ready_get() -> flask.Response:
    """Answer 200 when the database (and broker, when configured) can be reached, else 503."""
    report = check_readiness(service_context())
    return json_response(report.body(), 200 if report.ready else 503)


def version_get() -> flask.Response:
    """Answer with the running package version and the source revision it was built from."""
    build = build_info(service_context().settings)
    return json_response({"version": build.version, "revision": build.revision})
