"""LOG_FORMAT=json: every line is one JSON object, warnings and structured fields included."""

from __future__ import annotations

import logging
import warnings

from statistics_manager_service.log import correlation_scope
from statistics_manager_service.test.support.logs import json_logs


def test_a_warning_is_a_json_line_with_the_correlation_id() -> None:
    with json_logs() as lines, correlation_scope("warned-7"), warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("the old setting is deprecated", DeprecationWarning, stacklevel=1)
    (line,) = lines.all()
    assert line["logger"] == "py.warnings"
    assert line["level"] == "WARNING"
    assert "DeprecationWarning: the old setting is deprecated" in line["message"]
    assert line["correlation_id"] == "warned-7"


def test_structured_fields_become_keys_and_cannot_replace_the_standard_ones() -> None:
    with json_logs() as lines:
        logging.getLogger("statistics_manager_service.test").info(
            "did %s", "something", extra={"fields": {"status": 201, "duration_ms": 1.5, "level": "forged"}}
        )
    (line,) = lines.all()
    assert line["message"] == "did something"
    assert line["status"] == 201
    assert line["duration_ms"] == 1.5
    assert line["level"] == "INFO"
    assert line["correlation_id"] == "-"
