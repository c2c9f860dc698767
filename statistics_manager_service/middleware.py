"""The ASGI middleware in front of every request: correlation id, authentication, metrics, access log
and the request's span."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import jwt
import orjson
from a2wsgi.wsgi import Body, build_environ
from opentelemetry.trace import Span, SpanKind
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from statistics_manager_service import metrics, tracing
from statistics_manager_service.auth import (
    ANONYMOUS_INTERNAL,
    Principal,
    bearer_token,
    caller_name,
    decode_token,
    in_networks,
    peek_principal,
    set_current_principal,
)
from statistics_manager_service.config import Settings
from statistics_manager_service.exception_handling_utils.errors import (
    AUTHORIZATION_TOO_LONG,
    HEADERS_TOO_LARGE,
    INVALID_TOKEN,
    MAX_AUTHORIZATION_BYTES,
    MAX_REQUEST_HEADER_BYTES,
    MISSING_CORRELATION_ID,
    BadRequest,
    ServiceError,
    Unauthorized,
)
from statistics_manager_service.log import MAX_CORRELATION_ID_LENGTH, correlation_id_var

logger = logging.getLogger(__name__)
# One line per request; its own logger, so that it can be leveled or routed on its own.
access_logger = logging.getLogger("statistics_manager_service.access")

CORRELATION_HEADER = b"x-correlation-id"
TRACEPARENT_HEADER = b"traceparent"
# Probes answer many times a minute: their access lines are logged at debug level.
PROBE_SUFFIXES = ("/health", "/ready", "/metrics")
MAX_CACHED_TOKENS = 4096
# Metric label of a request method outside this set: a client chooses the method.
LABELLED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


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


class AcceptedTokens:
    """Principals of bearer tokens already verified, until their `exp`.

    A token `decode_token` accepted stays acceptable until it expires (`nbf` and `iat` only
    become more valid with time), so answering from here is the same decision without the HMAC
    and JSON work. Entries are keyed by the token itself, never by the header around it, so
    padding a header cannot add entries. Rejections are not remembered: each is decided, and
    logged, again.
    """

    def __init__(self, capacity: int = MAX_CACHED_TOKENS) -> None:
        self.capacity = capacity
        self._entries: dict[str, tuple[Principal, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str, now_s: float) -> Principal | None:
        """Return the principal of an accepted, unexpired token, else None."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        principal, expires_s = entry
        if now_s >= expires_s:
            self._entries.pop(token, None)
            return None
        return principal

    def remember(self, token: str, principal: Principal) -> None:
        """Keep an accepted token's principal until its `exp` claim."""
        try:
            expires_s = float(jwt.decode(token, options={"verify_signature": False})["exp"])
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            return
        if len(self._entries) >= self.capacity:
            self._entries.pop(next(iter(self._entries)), None)  # the oldest entry
        self._entries[token] = (principal, expires_s)


def _header_bytes(scope: Scope) -> int:
    return sum(len(name) + len(value) for name, value in scope.get("headers", ()))


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
        self.accepted_tokens = AcceptedTokens()
        self._request_counters: dict[tuple[str, str, int], Any] = {}
        self._latency_histograms: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        started = time.perf_counter()
        if _header_bytes(scope) > MAX_REQUEST_HEADER_BYTES:
            # Before any work: the headers are not parsed, kept or logged.
            await send_json_error(send, 431, HEADERS_TOO_LARGE, str(uuid.uuid4()))
            self._count(scope.get("method", "GET"), "other", 431, started)
            return
        if path == "/metrics":
            await self._serve_metrics(send)
            self._log_access(scope, "/metrics", 200, started, None)
            return
        status_holder = {"status": 500}
        supplied_id = _header(scope, CORRELATION_HEADER)
        if supplied_id is not None:
            supplied_id = supplied_id.strip()[:MAX_CORRELATION_ID_LENGTH]
        correlation_id = supplied_id or str(uuid.uuid4())
        token = correlation_id_var.set(correlation_id)
        route = path if path in self.known_paths else None
        endpoint = route or "other"
        encoded_id = correlation_id.encode("latin-1", errors="replace")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != CORRELATION_HEADER]
                headers.append((CORRELATION_HEADER, encoded_id))
                message["headers"] = headers
            await send(message)

        try:
            with self._request_span(scope, route, correlation_id) as span:
                try:
                    if path in self.protected_paths:
                        rejection = self._authenticate(scope, supplied_id)
                        if rejection is not None:
                            status_holder["status"] = rejection.status
                            await send_json_error(send, rejection.status, rejection.message, correlation_id)
                            return
                    await self.app(scope, receive, send_with_id)
                finally:
                    if span is not None:
                        _end_request_span(span, status_holder["status"], peek_principal())
        finally:
            self._log_access(scope, route, status_holder["status"], started, peek_principal())
            set_current_principal(None)
            correlation_id_var.reset(token)
            self._count(scope.get("method", "GET"), endpoint, status_holder["status"], started)

    def _request_span(
        self, scope: Scope, route: str | None, correlation_id: str
    ) -> contextlib.AbstractContextManager[Span | None]:
        """The server span of a request, a child of the caller's `traceparent` when one is sent."""
        if not tracing.enabled():
            return contextlib.nullcontext(None)
        method = scope.get("method", "GET")
        return tracing.span(
            f"{method} {route}" if route else method,
            kind=SpanKind.SERVER,
            parent=_header(scope, TRACEPARENT_HEADER),
            attributes={
                "http.request.method": method,
                "http.route": route or "",
                "url.path": scope["path"],
                "correlation_id": correlation_id,
            },
        )

    def _log_access(
        self, scope: Scope, route: str | None, status: int, started: float, principal: Principal | None
    ) -> None:
        """Log the request's one access line: method, route, status, duration and caller."""
        path: str = scope["path"]
        level = logging.DEBUG if path.endswith(PROBE_SUFFIXES) else logging.INFO
        if not access_logger.isEnabledFor(level):
            return
        method = scope.get("method", "GET")
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        caller = caller_name(principal)
        shown_route = route or path[:200]
        access_logger.log(
            level,
            "%s %s %d %.1f ms caller=%s",
            method,
            shown_route,
            status,
            duration_ms,
            caller,
            extra={
                "fields": {
                    "method": method,
                    "route": shown_route,
                    "status": status,
                    "duration_ms": duration_ms,
                    "caller": caller,
                }
            },
        )

    def _count(self, method: str, endpoint: str, status: int, started: float) -> None:
        """Count the request and its latency (labelled children are looked up once each)."""
        method = metrics.bounded_label(method, LABELLED_METHODS)
        counter = self._request_counters.get((method, endpoint, status))
        if counter is None:
            counter = metrics.HTTP_REQUESTS.labels(method, endpoint, str(status))
            self._request_counters[(method, endpoint, status)] = counter
        histogram = self._latency_histograms.get((method, endpoint))
        if histogram is None:
            histogram = metrics.HTTP_LATENCY.labels(method, endpoint)
            self._latency_histograms[(method, endpoint)] = histogram
        counter.inc()
        histogram.observe(time.perf_counter() - started)

    def _authenticate(self, scope: Scope, supplied_id: str | None) -> ServiceError | None:
        """Return the error to answer with, or None after remembering the caller."""
        if not supplied_id:
            return BadRequest(MISSING_CORRELATION_ID)
        authorization = _header(scope, b"authorization")
        if not authorization:
            if self.settings.allow_anonymous_internal and in_networks(
                (scope.get("client") or (None, 0))[0], self.settings.anonymous_internal_networks
            ):
                set_current_principal(ANONYMOUS_INTERNAL)
                return None
            return Unauthorized(
                f"{INVALID_TOKEN}: the Authorization header is missing; send `Bearer <token>`"
            )
        if len(authorization) > MAX_AUTHORIZATION_BYTES:
            return Unauthorized(AUTHORIZATION_TOO_LONG)
        try:
            token = bearer_token(authorization)
            principal = self.accepted_tokens.get(token, time.time())
            if principal is None:
                principal = decode_token(
                    token, sign_key=self.settings.jwt_sign_key, algorithm=self.settings.jwt_sign_algorithm
                )
                self.accepted_tokens.remember(token, principal)
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


def _end_request_span(span: Span, status: int, principal: Principal | None) -> None:
    span.set_attribute("http.response.status_code", status)
    span.set_attribute("caller", caller_name(principal))
    if status >= 500:
        tracing.mark_failed(span, f"HTTP {status}")


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class WholeResponseWSGI:
    """Serve the Flask (WSGI) app from worker threads, sending each whole response from the loop.

    Connexion's default bridge (a2wsgi) makes the worker thread wait on the event loop for the
    response start, every body chunk and the end: three cross-thread round trips per request,
    each fought over the GIL under load. The handlers build their bodies in memory, so this bridge
    collects status, headers and body in the thread and sends them in one go. The request body is
    still read lazily, by a2wsgi's own reader, and the request's context variables (correlation
    id, caller) reach the thread as before.
    """

    def __init__(self, app: WSGIApp, workers: int) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="WSGI")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        loop = asyncio.get_running_loop()
        environ = cast(dict[str, Any], build_environ(scope, Body(loop, receive)))  # type: ignore[arg-type]
        # The thread sees this request's context variables (correlation id, caller), as with a2wsgi.
        respond = functools.partial(contextvars.copy_context().run, self._respond, environ)
        status, headers, body = await loop.run_in_executor(self.executor, respond)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _respond(self, environ: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Run the app in this thread; return its status, headers and whole body."""
        started: list[tuple[int, list[tuple[bytes, bytes]]]] = []
        chunks: list[bytes] = []

        def start_response(
            status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            if exc_info is not None and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [
                (
                    int(status.split(" ", 1)[0]),
                    [
                        (name.strip().encode("latin1").lower(), value.strip().encode("latin1"))
                        for name, value in response_headers
                    ],
                )
            ]
            return chunks.append

        iterable = self.app(environ, start_response)
        try:
            chunks.extend(iterable)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
        status, headers = started[0]
        return status, headers, b"".join(chunks)
