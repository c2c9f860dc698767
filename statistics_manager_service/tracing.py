"""OpenTelemetry tracing: off unless an OTLP endpoint is configured, W3C `traceparent` across hops.

Every layer that opens a span or carries a trace context imports this module, so it sits at the
bottom beside `log` and imports nothing of the service but the settings. While tracing is off
(no endpoint, nothing installed), `span` yields None without touching OpenTelemetry, and nothing
is propagated: the request path pays one attribute lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from statistics_manager_service.config import Settings

logger = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACES_PATH = "/v1/traces"
# The service name of exported spans unless OTEL_SERVICE_NAME says otherwise.
DEFAULT_SERVICE_NAME = "statistics-manager"
# A span links to at most this many producers (the SDK's default limit of links per span).
MAX_LINKS = 128

_PROPAGATOR = TraceContextTextMapPropagator()


class _Installed:
    """The tracer of the installed provider; None while tracing is off."""

    tracer: Tracer | None = None


def install(provider: trace.TracerProvider | None) -> None:
    """Trace with `provider` from now on (None: tracing off)."""
    _Installed.tracer = None if provider is None else provider.get_tracer("statistics_manager_service")


def enabled() -> bool:
    """Tell whether spans are recorded."""
    return _Installed.tracer is not None


def configure_tracing(settings: Settings) -> None:
    """Install an SDK provider exporting to `OTEL_EXPORTER_OTLP_ENDPOINT` over OTLP/HTTP, when set.

    The SDK reads the other standard variables itself (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
    OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_HEADERS, ...). Without an endpoint nothing is installed.
    """
    endpoint = settings.otel_exporter_otlp_endpoint
    if not endpoint:
        install(None)
        return
    # Imported only here: a process that does not trace never loads the SDK.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Resource.create merges OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES over this default.
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    # The variable names the collector's base URL; the traces path is appended, as the SDK would.
    traces_url = endpoint.rstrip("/") + TRACES_PATH
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url)))
    trace.set_tracer_provider(provider)
    install(provider)
    logger.info("tracing: spans exported to %s", traces_url)


def span_context(traceparent: str | None) -> SpanContext | None:
    """Decode a W3C `traceparent` value; None when absent or malformed."""
    if not traceparent:
        return None
    context = _PROPAGATOR.extract({TRACEPARENT: traceparent})
    decoded = trace.get_current_span(context).get_span_context()
    return decoded if decoded.is_valid else None


def current_traceparent() -> str | None:
    """The `traceparent` of the current span, to hand to the next hop; None while not tracing."""
    if _Installed.tracer is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT)


def start_span(
    name: str,
    *,
    kind: SpanKind,
    parent: str | None,
    attributes: dict[str, str | int | float | bool] | None = None,
) -> Span | None:
    """Start a span that is not made current (the caller ends it); None while not tracing."""
    tracer = _Installed.tracer
    if tracer is None:
        return None
    parent_context = span_context(parent)
    context = trace.set_span_in_context(trace.NonRecordingSpan(parent_context)) if parent_context else None
    return tracer.start_span(name, context=context, kind=kind, attributes=attributes)


def traceparent_of(current: Span) -> str | None:
    """The `traceparent` value naming `current` as the parent of the next hop."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(current))
    return carrier.get(TRACEPARENT)


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: str | SpanContext | None = None,
    links: Sequence[SpanContext] = (),
    attributes: dict[str, str | int | float | bool] | None = None,
) -> Iterator[Span | None]:
    """Run the block in a new current span (a child of `parent` when given); yield None while off.

    An exception leaving the block marks the span as failed and is recorded on it.
    """
    tracer = _Installed.tracer
    if tracer is None:
        yield None
        return
    parent_context = span_context(parent) if isinstance(parent, str) else parent
    context = None
    if parent_context is not None:
        context = trace.set_span_in_context(trace.NonRecordingSpan(parent_context))
    with tracer.start_as_current_span(
        name,
        context=context,
        kind=kind,
        links=[Link(link) for link in links[:MAX_LINKS]],
        attributes=attributes,
        record_exception=True,
        set_status_on_exception=True,
    ) as current:
        yield current


def mark_failed(current: Span | None, description: str) -> None:
    """Set an error status on a span (no-op while not tracing)."""
    if current is not None:
        current.set_status(Status(StatusCode.ERROR, description))
