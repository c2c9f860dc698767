"""One access line per request, in the JSON log format, whoever answered it and however it ended."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.test.support.logs import JsonLines, json_logs
from statistics_manager_service.test.support.pipeline import account_message, process

USER = "accesslog1"
OTHER = "accesslog2"
CONSUMPTION = "/api/statistics/energy-consumption"
RANGE = "start_date=2026-03-01T00:00:00Z&end_date=2026-03-02T00:00:00Z"
ACCESS_LOGGER = "statistics_manager_service.access"

Headers = Callable[..., dict[str, str]]


@pytest.fixture
def logs(context: ServiceContext) -> Iterator[JsonLines]:
    """The JSON lines logged once two households are known."""
    assert process(context, [account_message(USER), account_message(OTHER)]) == []
    with json_logs("INFO") as lines:
        yield lines


def _only_access_line(logs: JsonLines) -> dict[str, Any]:
    (line,) = logs.of(ACCESS_LOGGER)
    return line


def test_an_answered_request_is_one_line_with_route_status_duration_and_caller(
    client, auth_headers: Headers, logs: JsonLines
) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(user_id=USER)
    response = client.get(f"{CONSUMPTION}?user_ids={USER}&{RANGE}", headers=headers)
    assert response.status_code == 200
    line = _only_access_line(logs)
    assert line["level"] == "INFO"
    assert line["method"] == "GET"
    assert line["route"] == CONSUMPTION  # the template: no query string
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["correlation_id"] == headers["X-Correlation-ID"]
    assert line["caller"] == USER
    token = headers["Authorization"].split()[1]
    assert all(token not in str(each) for each in logs.all())


def test_a_service_caller_is_named_service(client, auth_headers: Headers, logs: JsonLines) -> None:  # type: ignore[no-untyped-def]
    client.get(f"{CONSUMPTION}?user_ids={USER}&{RANGE}", headers=auth_headers(service=True))
    assert _only_access_line(logs)["caller"] == "service"


@pytest.mark.parametrize(
    ("case", "status", "caller"),
    [
        ("no token", 401, "anonymous"),
        ("forged token", 401, "anonymous"),
        ("another household", 403, USER),
        ("no correlation id", 400, "anonymous"),
        ("invalid parameter", 400, USER),
    ],
)
def test_refused_requests_are_logged_too(
    client, auth_headers: Headers, logs: JsonLines, case: str, status: int, caller: str
) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(user_id=USER)
    url = f"{CONSUMPTION}?user_ids={USER}&{RANGE}"
    if case == "no token":
        del headers["Authorization"]
    elif case == "forged token":
        headers["Authorization"] = headers["Authorization"][:-4] + "AAAA"
    elif case == "another household":
        url = f"{CONSUMPTION}?user_ids={OTHER}&{RANGE}"
    elif case == "no correlation id":
        del headers["X-Correlation-ID"]
    elif case == "invalid parameter":
        url += "&group_by=fortnightly"
    response = client.get(url, headers=headers)
    assert response.status_code == status
    line = _only_access_line(logs)
    assert (line["method"], line["route"], line["status"], line["caller"]) == (
        "GET",
        CONSUMPTION,
        status,
        caller,
    )
    assert line["correlation_id"] == response.headers["X-Correlation-ID"]
    if "Authorization" in headers:
        assert all(headers["Authorization"].split()[1] not in str(each) for each in logs.all())


def test_an_unknown_path_is_logged_with_its_path(client, auth_headers: Headers, logs: JsonLines) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/api/statistics/no-such-thing", headers=auth_headers(user_id=USER))
    assert response.status_code == 404
    line = _only_access_line(logs)
    assert (line["route"], line["status"]) == ("/api/statistics/no-such-thing", 404)


def test_probes_are_logged_at_debug_level_only(client, logs: JsonLines) -> None:  # type: ignore[no-untyped-def]
    for path in ("/api/statistics/health", "/api/statistics/ready", "/metrics"):
        assert client.get(path).status_code == 200
    assert logs.of(ACCESS_LOGGER) == []
    logging.getLogger().setLevel(logging.DEBUG)
    for path in ("/api/statistics/health", "/metrics"):
        client.get(path)
    lines = logs.of(ACCESS_LOGGER)
    assert [(line["level"], line["route"], line["status"]) for line in lines] == [
        ("DEBUG", "/api/statistics/health", 200),
        ("DEBUG", "/metrics", 200),
    ]
    assert all(line["caller"] == "anonymous" for line in lines)
