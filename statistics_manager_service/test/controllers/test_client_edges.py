"""Edges a client hits: dates the service does not hold, huge pages, mistyped dates, too many ids,
and CSV as a spreadsheet expects it. Every refusal is a 400 (or 406) that names the parameter."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.test.support.pipeline import account_message, meter_message, process, reading

USER = "edgehome01"
START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
API = "/api/statistics"
Headers = Callable[..., dict[str, str]]


@pytest.fixture
def seeded(context: ServiceContext) -> ServiceContext:
    readings = [reading(START + dt.timedelta(minutes=15 * q), 100.0 * q, power_w=400.0) for q in range(97)]
    dead = process(
        context, [account_message(USER, tarif_type="simple", country="PT"), meter_message(USER, readings)]
    )
    assert dead == []
    return context


def error_of(client: Any, path: str, headers: dict[str, str], status: int = 400) -> str:
    response = client.get(API + path, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message: str = response.json()["error"]
    assert "Traceback" not in message
    return message


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        (f"/energy-consumption?user_ids={USER}&start_date=1999-12-31T23:59:59Z", "start_date"),
        (
            f"/energy-consumption?user_ids={USER}&start_date=2026-01-01T00:00:00Z&end_date=2100-01-02T00:00:00Z",
            "end_date",
        ),
        (
            f"/energy-consumption?user_ids={USER}&start_date=0001-01-01T00:00:00%2B01:00&group_by=yearly",
            "start_date",
        ),
        (f"/energy-consumption?user_ids={USER}&start_date=9999-12-31T23:59:59-01:00", "start_date"),
        (f"/energy-injection?user_ids={USER}&start_date=0001-01-01T00:30:00%2B00:45", "start_date"),
        ("/ecosignal-forecast?forecast_day=9999-12-31", "forecast_day"),
        ("/ecosignal-forecast?forecast_day=0001-01-01T00:00:00.000Z", "forecast_day"),
        (f"/statistics-summary?user_id={USER}&date=9999-12-31", "date"),
        ("/energy-consumed-forecast-vs-real?start_date=2026-01-01T00:00:00Z&page=1000001", "page"),
        (
            "/energy-consumed-forecast-vs-real?start_date=2026-01-01T00:00:00Z&page=99999999999999999999",
            "page",
        ),
    ],
)
def test_values_outside_what_the_service_holds_are_400_naming_the_parameter(
    client, seeded, auth_headers: Headers, path: str, parameter: str
) -> None:  # type: ignore[no-untyped-def]
    message = error_of(client, path, auth_headers(service=True))
    assert parameter in message


def test_a_mistyped_date_says_the_format_and_how_to_send_a_plus(
    client, seeded, auth_headers: Headers
) -> None:  # type: ignore[no-untyped-def]
    # A `+` sent unescaped arrives as a space.
    message = error_of(
        client,
        f"/energy-consumption?user_ids={USER}&start_date=2026-03-01T00:00:00 01:00",
        auth_headers(service=True),
    )
    assert "start_date" in message and "%2B" in message and "expected format" in message
    assert "[0-9]" not in message  # no regular expression
    message = error_of(
        client, f"/energy-consumption?user_ids={USER}&start_date=yesterday", auth_headers(service=True)
    )
    assert "start_date" in message and "e.g." in message and "[0-9]" not in message


def test_more_than_100_user_ids_says_the_limit(client, seeded, auth_headers: Headers) -> None:  # type: ignore[no-untyped-def]
    ids = "&".join(f"user_ids=u{i:09d}" for i in range(101))
    message = error_of(
        client, f"/energy-consumption?{ids}&start_date=2026-03-01T00:00:00Z", auth_headers(service=True)
    )
    assert "user_ids" in message and "101" in message and "at most 100" in message
    message = error_of(
        client,
        "/energy-consumption?user_ids=short&start_date=2026-03-01T00:00:00Z",
        auth_headers(service=True),
    )
    assert "user_ids" in message and "exactly 10" in message


def _csv(client: Any, path: str, headers: dict[str, str]) -> tuple[list[list[str]], str]:
    response = client.get(API + path, headers={**headers, "Accept": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.text))), response.headers["content-disposition"]


def test_csv_has_its_whole_header_lowercase_booleans_and_a_file_name(
    client, seeded, auth_headers: Headers
) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(service=True)
    full = [
        "user_id",
        "timestamp",
        "value",
        "units",
        "slot_number",
        "coverage",
        "reading_count",
        "reset_detected",
        "last_updated",
    ]
    rows, disposition = _csv(
        client,
        f"/energy-consumption?user_ids={USER}&start_date=2026-03-01T00:00:00Z&end_date=2026-03-01T01:00:00Z"
        "&group_by=15_mins&include_quality=true",
        headers,
    )
    assert rows[0] == full
    assert [row[0] for row in rows[1:]] == [USER] * 4
    assert {row[full.index("reset_detected")] for row in rows[1:]} == {"false"}
    assert [float(row[2]) for row in rows[1:]] == [0.1] * 4
    assert disposition == 'attachment; filename="consumption_15_mins_2026-03-01_2026-03-01.csv"'

    # No row in the range: the header is still complete.
    rows, _ = _csv(
        client,
        f"/energy-consumption?user_ids={USER}&start_date=2025-03-01T00:00:00Z&end_date=2025-03-02T00:00:00Z"
        "&include_quality=true",
        headers,
    )
    assert rows == [full]
    rows, _ = _csv(
        client,
        f"/energy-cost?user_ids={USER}&start_date=2025-03-01T00:00:00Z&end_date=2025-03-02T00:00:00Z",
        headers,
    )
    assert rows == [
        [
            "user_id",
            "timestamp",
            "value",
            "units",
            "slot_number",
            "energy_cost",
            "fixed_cost",
            "export_revenue",
            "net_cost",
        ]
    ]


def test_csv_asked_of_an_endpoint_without_csv_is_406(client, seeded, auth_headers: Headers) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(service=True)
    for path in (f"/energy-consumption-last?user_ids={USER}", "/ecosignal-forecast?forecast_day=2026-03-01"):
        message = error_of(client, path, {**headers, "Accept": "text/csv"}, status=406)
        assert "application/json" in message
        for accept in ("application/json", "*/*", "text/csv, application/json;q=0.5"):
            response = client.get(
                API + path, headers={**headers, "Accept": accept, "X-Correlation-ID": str(uuid.uuid4())}
            )
            assert response.status_code == 200, (accept, response.text)
