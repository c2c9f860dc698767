"""`coverage` is the share of a bucket's whole duration backed by readings, and no data is null.

A Lisbon household's readings start on Wednesday 4 March 2026 at local midnight and stop on Friday
10 April at local noon; 29 March has 23 hours. The expected shares are counted here in hours of the
local calendar, independently of the service.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.test.support.pipeline import account_message, meter_message, process, reading

USER = "covhome001"
LISBON = ZoneInfo("Europe/Lisbon")
FIRST = dt.datetime(2026, 3, 4, tzinfo=LISBON)
LAST = dt.datetime(2026, 4, 10, 12, tzinfo=LISBON)
Headers = Callable[..., dict[str, str]]


def hours(start: dt.datetime, end: dt.datetime) -> float:
    """Elapsed hours between two aware instants (DST-aware)."""
    return (end.astimezone(dt.UTC) - start.astimezone(dt.UTC)).total_seconds() / 3600


def covered_hours(start: dt.datetime, end: dt.datetime) -> float:
    """Hours of [start, end) inside the readings' span."""
    return max(hours(max(start, FIRST, key=_utc), min(end, LAST, key=_utc)), 0.0)


def _utc(instant: dt.datetime) -> dt.datetime:
    return instant.astimezone(dt.UTC)


@pytest.fixture
def household(context: ServiceContext) -> ServiceContext:
    quarters = int(hours(FIRST, LAST) * 4)
    readings = [
        reading(FIRST.astimezone(dt.UTC) + dt.timedelta(minutes=15 * q), 50.0 * q, power_w=200.0)
        for q in range(quarters + 1)
    ]
    dead = process(
        context, [account_message(USER, tarif_type="simple", country="PT"), meter_message(USER, readings)]
    )
    assert dead == []
    return context


def series(
    client: Any, headers: dict[str, str], group_by: str, start: dt.datetime, end: dt.datetime
) -> list[dict[str, Any]]:
    response = client.get(
        f"/api/statistics/energy-consumption?user_ids={USER}&group_by={group_by}&include_quality=true"
        f"&start_date={start.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}&end_date={end.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}",
        headers=headers,
    )
    assert response.status_code == 200, response.text
    metrics: list[dict[str, Any]] = response.json()[0]["metrics"]
    return metrics


def local(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=LISBON)  # type: ignore[misc]


def test_partial_buckets_report_their_share_of_the_whole_duration(
    client, household, auth_headers: Headers
) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(service=True)
    months = series(client, headers, "monthly", local(2026, 3, 1), local(2026, 5, 1))
    march, april = (local(2026, 3, 1), local(2026, 4, 1)), (local(2026, 4, 1), local(2026, 5, 1))
    assert [m["coverage"] for m in months] == [
        round(covered_hours(*march) / hours(*march), 4),  # from the 4th: 27 days and 23 hours of 743 hours
        round(covered_hours(*april) / hours(*april), 4),
    ]
    assert months[0]["coverage"] < 1

    # ISO weeks start on Monday: the first week of data (2-8 March) is covered from Wednesday.
    weeks = series(client, headers, "weekly", local(2026, 3, 2), local(2026, 3, 16))
    assert [w["coverage"] for w in weeks] == [round(5 / 7, 4), 1.0]

    year = series(client, headers, "yearly", local(2026, 1, 1), local(2027, 1, 1))
    assert year[0]["coverage"] == round(covered_hours(local(2026, 1, 1), local(2027, 1, 1)) / 8760, 4)

    days = series(client, headers, "daily", local(2026, 4, 9), local(2026, 4, 11))
    assert [d["coverage"] for d in days] == [1.0, 0.5]  # the last day is measured until noon
    dst = series(client, headers, "daily", local(2026, 3, 29), local(2026, 3, 30))
    assert dst[0]["coverage"] == 1.0  # 23 measured hours of a 23-hour day

    hourly = series(client, headers, "hourly", local(2026, 4, 10, 10), local(2026, 4, 10, 14))
    assert [h["coverage"] for h in hourly] == [1.0, 1.0]  # no bucket after the last reading


def test_the_summary_reports_each_figures_coverage_and_null_without_data(
    client, household, auth_headers: Headers
) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(service=True)
    response = client.get(
        f"/api/statistics/statistics-summary?user_id={USER}&date=2026-04-10", headers=headers
    )
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["cost_today"]["coverage"] == 0.5
    april = (local(2026, 4, 1), local(2026, 5, 1))
    assert summary["injection_month"]["coverage"] == round(covered_hours(*april) / hours(*april), 4)
    assert summary["injection_month"]["value"] == 0.0  # measured, and nothing injected
    assert summary["consumption_year"]["coverage"] == round(
        covered_hours(local(2026, 1, 1), local(2027, 1, 1)) / 8760, 4
    )

    # A day, and a month, without any reading: null, not 0.
    response = client.get(
        f"/api/statistics/statistics-summary?user_id={USER}&date=2026-06-15", headers=headers
    )
    summary = response.json()
    assert summary["cost_today"] == {"value": None, "units": "EUR", "coverage": 0.0}
    assert summary["injection_month"] == {"value": None, "units": "kWh", "coverage": 0.0}
    assert summary["consumption_year"]["value"] == pytest.approx(covered_hours(FIRST, LAST) * 4 * 0.05)
    response = client.get(
        f"/api/statistics/statistics-summary?user_id={USER}&date=2025-06-15", headers=headers
    )
    summary = response.json()
    for figure in (
        "cost_today",
        "injection_month",
        "consumption_year",
        "co2_footprint_year",
        "self_sufficiency_year",
    ):
        assert summary[figure]["value"] is None, figure
        assert summary[figure]["coverage"] == 0.0
