"""The ASGI middleware in front of every request: correlation id, authentication, metrics."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from statistics_manager_service import metrics
from statistics_manager_service.auth import decode_bearer, set_current_principal
from statistics_manager_service.config import Settings
from statistics_manager_service.exception_handling_utils.errors import (
    MISSING_CORRELATION_ID,
    BadRequest,
    ServiceError,
)
from statistics_manager_service.log import correlation_id_var

logger = logging.getLogger(__name__)

CORRELATION_HEADER = b"x-correlation-id"
MAX_CORRELATION_ID_LENGTH = 128


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


async def send_json_error(send: Send, status: int, message: str, correlation_id: str) -> None:
    """Answer with the service's JSON error shape."""
    body = orjson.dumps({"error": message})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (CORRELATION_HEADER, correlation_id.encode("latin-1")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestContextMiddleware:
    """Require and echo X-Correlation-ID, authenticate callers, count requests, serve /metrics."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        known_paths: frozenset[str],
        protected_paths: frozenset[str],
    ) -> None:
        self.app = app
        self.settings = settings
        self.known_paths = known_paths
        self.protected_paths = protected_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == "/metrics":
            await self._serve_metrics(send)
            return
        started = time.perf_counter()
        status_holder = {"status": 500}
        supplied_id = _header(scope, CORRELATION_HEADER)
        if supplied_id is not None:
            supplied_id = supplied_id.strip()[:MAX_CORRELATION_ID_LENGTH]
        correlation_id = supplied_id or str(uuid.uuid4())
        token = correlation_id_var.set(correlation_id)
        endpoint = path if path in self.known_paths else "other"
        encoded_id = correlation_id.encode("latin-1", errors="replace")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != CORRELATION_HEADER]
                headers.append((CORRELATION_HEADER, encoded_id))
                message["headers"] = headers
            await send(message)

        try:
            if path in self.protected_paths:
                rejection = self._authenticate(scope, supplied_id)
                if rejection is not None:
                    status_holder["status"] = rejection.status
                    await send_json_error(send, rejection.status, rejection.message, correlation_id)
                    return
            await self.app(scope, receive, send_with_id)
        finally:
            set_current_principal(None)
            correlation_id_var.reset(token)
            method = scope.get("method", "GET")
            metrics.HTTP_REQUESTS.labels(method, endpoint, str(status_holder["status"])).inc()
            metrics.HTTP_LATENCY.labels(method, endpoint).observe(time.perf_counter() - started)

    def _authenticate(self, scope: Scope, supplied_id: str | None) -> ServiceError | None:
        """Return the error to answer with, or None after remembering the caller."""
        if not supplied_id:
            return BadRequest(MISSING_CORRELATION_ID)
        try:
            principal = decode_bearer(
                _header(scope, b"authorization"),
                sign_key=self.settings.jwt_sign_key,
                algorithm=self.settings.jwt_sign_algorithm,
                allow_anonymous=self.settings.allow_anonymous_internal,
            )
        except ServiceError as error:
            return error
        set_current_principal(principal)
        return None

    async def _serve_metrics(self, send: Send) -> None:
        body, content_type = metrics.render_metrics()
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        start: dict[str, Any] = {"type": "http.response.start", "status": 200, "headers": headers}
        await send(start)
        await send({"type": "http.response.body", "body": body})
