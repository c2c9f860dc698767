"""Tracing is off without OTEL_EXPORTER_OTLP_ENDPOINT; with it, spans reach the collector over OTLP/HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from statistics_manager_service import tracing
from statistics_manager_service.config import ConfigurationError, Settings


class _Collector(BaseHTTPRequestHandler):
    """A stand-in OTLP/HTTP collector: keeps each request's path and decoded body."""

    received: ClassVar[list[tuple[str, ExportTraceServiceRequest]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.received.append((self.path, request))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def collector() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_without_an_endpoint_nothing_is_installed_and_nothing_propagated() -> None:
    tracing.configure_tracing(Settings())
    assert not tracing.enabled()
    with tracing.span("ignored") as current:
        assert current is None
        assert tracing.current_traceparent() is None


def test_the_endpoint_must_be_an_http_url() -> None:
    with pytest.raises(ConfigurationError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, dotenv_path=None)


def test_with_an_endpoint_spans_are_exported_to_its_traces_path(collector: str) -> None:
    settings = Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": collector + "/"}, dotenv_path=None)
    tracing.configure_tracing(settings)
    try:
        assert tracing.enabled()
        with tracing.span("exported", attributes={"cause": "test"}):
            traceparent = tracing.current_traceparent()
        assert traceparent is not None
        provider = trace.get_tracer_provider()
        provider.force_flush()  # type: ignore[attr-defined]
    finally:
        tracing.install(None)
    deadline = time.monotonic() + 30
    while not _Collector.received and time.monotonic() < deadline:
        time.sleep(0.05)
    ((path, request),) = _Collector.received
    assert path == "/v1/traces"
    (resource_spans,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
    assert service == "statistics-manager"
    (span,) = resource_spans.scope_spans[0].spans
    assert span.name == "exported"
    assert span.trace_id.hex() == traceparent.split("-")[1]
