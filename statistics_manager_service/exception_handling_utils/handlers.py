"""Map every exception to the service's `{"error": ...}` JSON; no stack trace reaches a client."""

from __future__ import annotations

import logging
import re

import connexion
import orjson
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from werkzeug.exceptions import HTTPException as WerkzeugHTTPException

from statistics_manager_service.exception_handling_utils.errors import (
    INTERNAL_ERROR,
    ServiceError,
    TooManyRequests,
)

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "database unavailable, try again later"
_SCHEMA_DETAIL = re.compile(r"\n\nFailed validating.*", re.DOTALL)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> ConnexionResponse:
    """Build the JSON error response."""
    return ConnexionResponse(
        status_code=status,
        mimetype="application/json",
        content_type="application/json",
        body=orjson.dumps({"error": message}),
        headers=headers,
    )


def _service_error(_request: ConnexionRequest, error: Exception) -> ConnexionResponse:
    assert isinstance(error, ServiceError)
    if error.status >= 500:
        logger.error("%s: %s", type(error).__name__, error.message)
    if isinstance(error, TooManyRequests):
        return error_response(error.status, error.message, {"Retry-After": str(error.retry_after_s)})
    return error_response(error.status, error.message)


def _problem(_request: ConnexionRequest, error: Exception) -> ConnexionResponse:
    assert isinstance(error, ProblemException)
    detail = str(error.detail or error.title or "request rejected")
    # jsonschema appends the whole schema to its message; the first line says what is wrong.
    detail = _SCHEMA_DETAIL.sub("", detail).strip()
    status = error.status or 400
    if status >= 500:
        logger.error("problem %s: %s", status, detail)
        return error_response(500, INTERNAL_ERROR)
    return error_response(status, detail)


def _http_error(_request: ConnexionRequest, error: Exception) -> ConnexionResponse:
    if isinstance(error, StarletteHTTPException):
        status, detail = error.status_code, str(error.detail)
    else:
        assert isinstance(error, WerkzeugHTTPException)
        status, detail = error.code or 500, str(error.description)
    if status == 404:
        return error_response(404, "no such endpoint; see /api/statistics/ui/")
    if status == 405:
        return error_response(405, "method not allowed on this endpoint")
    if status >= 500:
        logger.error("http error %s: %s", status, detail)
        return error_response(500, INTERNAL_ERROR)
    return error_response(status, detail)


def _database_error(_request: ConnexionRequest, error: Exception) -> ConnexionResponse:
    if (
        isinstance(error, DBAPIError)
        and not error.connection_invalidated
        and not isinstance(error, OperationalError)
    ):
        logger.exception("database error", exc_info=error)
        return error_response(500, INTERNAL_ERROR)
    logger.warning("database unavailable: %s", str(error).splitlines()[0])
    return error_response(503, DATABASE_UNAVAILABLE)


def _unexpected(_request: ConnexionRequest, error: Exception) -> ConnexionResponse:
    logger.error("unhandled error", exc_info=error)
    return error_response(500, INTERNAL_ERROR)


def register_error_handlers(app: connexion.FlaskApp) -> None:
    """Install the mapping on the app."""
    app.add_error_handler(ServiceError, _service_error)
    app.add_error_handler(ProblemException, _problem)
    app.add_error_handler(StarletteHTTPException, _http_error)
    app.add_error_handler(WerkzeugHTTPException, _http_error)
    app.add_error_handler(OperationalError, _database_error)
    app.add_error_handler(PoolTimeoutError, _database_error)
    app.add_error_handler(DBAPIError, _database_error)
    app.add_error_handler(Exception, _unexpected)
