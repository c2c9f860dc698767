"""Logging setup: every line carries the correlation id of the request or message it serves."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO

from opentelemetry import trace

from statistics_manager_service import tracing

NO_CORRELATION_ID = "-"
MAX_CORRELATION_ID_LENGTH = 128

correlation_id_var: ContextVar[str] = ContextVar("correlation_id", default=NO_CORRELATION_ID)


def current_correlation_id() -> str | None:
    """The correlation id of the request or message being served; None outside of one."""
    correlation_id = correlation_id_var.get()
    return None if correlation_id == NO_CORRELATION_ID else correlation_id


@contextmanager
def correlation_scope(correlation_id: str) -> Iterator[None]:
    """Log the block's lines with `correlation_id`."""
    token = correlation_id_var.set(correlation_id)
    try:
        yield
    finally:
        correlation_id_var.reset(token)


class CorrelationIdFilter(logging.Filter):
    """Attach the current correlation id (and trace and span ids, while tracing) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id_var.get()
        if tracing.enabled():
            span_context = trace.get_current_span().get_span_context()
            if span_context.is_valid:
                record.trace_id = format(span_context.trace_id, "032x")
                record.span_id = format(span_context.span_id, "016x")
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", NO_CORRELATION_ID),
        }
        # Structured details of a line (the access log's method, route, status, ...).
        fields: dict[str, Any] | None = getattr(record, "fields", None)
        if fields:
            entry.update((key, value) for key, value in fields.items() if key not in entry)
        if hasattr(record, "trace_id"):
            entry["trace_id"] = record.trace_id
            entry["span_id"] = getattr(record, "span_id", None)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s [%(correlation_id)s] %(name)s: %(message)s"


def configure_logging(level: str = "INFO", log_format: str = "text", stream: TextIO | None = None) -> None:
    """Send logs (and warnings) to stderr, or `stream`, as text or JSON lines, with correlation ids."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(CorrelationIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Kafka's client logs every reconnect attempt at INFO; keep outages readable.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, root.level))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # Every migration applied is logged by `migrate`; Alembic's own lines would repeat them.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
    # `warnings.warn` goes through the handler too, so JSON output stays entirely JSON.
    logging.captureWarnings(True)
