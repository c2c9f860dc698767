"""Capture the service's log output as configured for production, and parse its JSON lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from statistics_manager_service.log import configure_logging


class JsonLines:
    """The lines written so far by the JSON log handler, parsed."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def all(self) -> list[dict[str, Any]]:
        """Every line, each parsed as JSON (a line that is not JSON fails the test)."""
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line.strip()]

    def of(self, logger_name: str) -> list[dict[str, Any]]:
        """The lines of one logger."""
        return [line for line in self.all() if line["logger"] == logger_name]


@contextmanager
def json_logs(level: str = "INFO") -> Iterator[JsonLines]:
    """Log as `LOG_FORMAT=json` does, into a buffer; restore the previous logging setup after."""
    root = logging.getLogger()
    handlers, root_level = list(root.handlers), root.level
    quieted = {name: logging.getLogger(name).level for name in ("kafka", "alembic", "uvicorn.access")}
    stream = io.StringIO()
    configure_logging(level, "json", stream=stream)
    try:
        yield JsonLines(stream)
    finally:
        logging.captureWarnings(False)
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(root_level)
        for name, logger_level in quieted.items():
            logging.getLogger(name).setLevel(logger_level)
