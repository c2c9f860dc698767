"""`compare_to` on historic series and the month comparison of the summary, against hand-computed days.

The household draws, in every hour, 100 Wh x the local day of the month + 1000 Wh x (year - 2023):
29 February 2024 is 24 x 3.9 = 93.6 kWh, the 23-hour 29 March 2026 is 23 x 5.9 = 135.7 kWh.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.test.support.pipeline import account_message, meter_message, process, reading

LISBON = ZoneInfo("Europe/Lisbon")
HOME = "comparing1"
# Local days with readings every 15 minutes (midnight to midnight); between them the register stands still.
CHUNKS = (
    (dt.date(2023, 2, 1), dt.date(2023, 4, 1)),
    (dt.date(2024, 2, 1), dt.date(2024, 3, 16)),
    (dt.date(2025, 3, 28), dt.date(2025, 3, 31)),
    (dt.date(2026, 3, 27), dt.date(2026, 3, 31)),
)
Headers = Callable[..., dict[str, str]]


def hourly_wh(at: dt.datetime) -> float:
    local = at.astimezone(LISBON)
    return 100.0 * local.day + 1000.0 * (local.year - 2023)


def home_readings() -> list[dict[str, Any]]:
    readings = []
    register = 0.0
    for first, last in CHUNKS:
        at = dt.datetime.combine(first, dt.time(), LISBON).astimezone(dt.UTC)
        end = dt.datetime.combine(last, dt.time(), LISBON).astimezone(dt.UTC)
        while True:
            readings.append(reading(at, register))
            if at >= end:
                break
            register += hourly_wh(at) / 4
            at += dt.timedelta(minutes=15)
    return readings


@pytest.fixture
def home(context: ServiceContext) -> ServiceContext:
    # The compared periods lie a year apart and the meter stands still in between: a gap the
    # default READING_MAX_GAP_DAYS would refuse to interpolate across.
    context.settings = dataclasses.replace(context.settings, reading_max_gap_days=730)
    messages = [account_message(HOME, tarif_type="simple", contracted_power="6.9 kVA", country="PT")]
    assert process(context, [*messages, meter_message(HOME, home_readings())]) == []
    return context


def _series(
    client: Any, headers: dict[str, str], path: str, start: str, end: str, group_by: str, compare: str
) -> Any:
    query = f"user_ids={HOME}&start_date={start}&end_date={end}&group_by={group_by}&compare_to={compare}"
    response = client.get(f"/api/statistics/{path}?{query.replace('+', '%2B')}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()[0]["metrics"]


def _pairs(metrics: list[dict[str, Any]]) -> list[tuple[str, float, str, float | None]]:
    return [
        (
            m["timestamp"],
            m["value"],
            m["previous_timestamp"],
            None if m["previous"] is None else round(m["previous"], 6),
        )
        for m in metrics
    ]


def test_previous_year_across_29_february(client, auth_headers: Headers, home) -> None:  # type: ignore[no-untyped-def]
    metrics = _series(
        client,
        auth_headers(user_id=HOME),
        "energy-consumption",
        "2024-02-28T00:00:00Z",
        "2024-03-02T00:00:00Z",
        "daily",
        "previous_year",
    )
    assert _pairs(metrics) == [
        ("2024-02-28T00:00:00+00:00", pytest.approx(91.2), "2023-02-28T00:00:00+00:00", 67.2),
        # 2023 has no 29 February: the same date clamps to the month's end.
        ("2024-02-29T00:00:00+00:00", pytest.approx(93.6), "2023-02-28T00:00:00+00:00", 67.2),
        ("2024-03-01T00:00:00+00:00", pytest.approx(26.4), "2023-03-01T00:00:00+00:00", 2.4),
    ]
    monthly = _series(
        client,
        auth_headers(user_id=HOME),
        "energy-consumption",
        "2024-02-01T00:00:00Z",
        "2024-03-01T00:00:00Z",
        "monthly",
        "previous_year",
    )
    # February 2024 has 29 days, February 2023 28: 24 x (0.1 x 435 + 29 x 1) and 24 x 0.1 x 406.
    assert _pairs(monthly) == [
        ("2024-02-01T00:00:00+00:00", pytest.approx(1740.0), "2023-02-01T00:00:00+00:00", 974.4)
    ]


def test_previous_year_of_a_dst_day_and_no_data_is_null(client, auth_headers: Headers, home) -> None:  # type: ignore[no-untyped-def]
    hourly = _series(
        client,
        auth_headers(service=True),
        "energy-consumption",
        "2026-03-29T00:00:00Z",
        "2026-03-29T23:00:00Z",
        "hourly",
        "previous_year",
    )
    assert len(hourly) == 23
    # After the clocks jump, 02:00 summer time compares with 02:00 of 29 March 2025 (still winter time).
    assert _pairs(hourly)[:2] == [
        ("2026-03-29T00:00:00+00:00", pytest.approx(5.9), "2025-03-29T00:00:00+00:00", 4.9),
        ("2026-03-29T02:00:00+01:00", pytest.approx(5.9), "2025-03-29T02:00:00+00:00", 4.9),
    ]
    before = _series(
        client,
        auth_headers(service=True),
        "energy-consumption",
        "2023-03-01T00:00:00Z",
        "2023-03-02T00:00:00Z",
        "daily",
        "previous_year",
    )
    # Before the first reading there are no statistics to compare with.
    assert _pairs(before) == [
        ("2023-03-01T00:00:00+00:00", pytest.approx(2.4), "2022-03-01T00:00:00+00:00", None)
    ]


def test_previous_period_of_a_23_hour_day_is_the_whole_day_before(
    client, auth_headers: Headers, home
) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(user_id=HOME)
    start, end = "2026-03-29T00:00:00Z", "2026-03-29T23:00:00Z"
    daily = _series(client, headers, "energy-consumption", start, end, "daily", "previous_period")
    assert _pairs(daily) == [
        ("2026-03-29T00:00:00+00:00", pytest.approx(135.7), "2026-03-28T00:00:00+00:00", 139.2)
    ]
    quarters = _series(client, headers, "energy-consumption", start, end, "15_mins", "previous_period")
    assert len(quarters) == 92
    assert _pairs(quarters)[3:5] == [
        ("2026-03-29T00:45:00+00:00", pytest.approx(1.475), "2026-03-28T00:45:00+00:00", 1.45),
        ("2026-03-29T02:00:00+01:00", pytest.approx(1.475), "2026-03-28T02:00:00+00:00", 1.45),
    ]
    assert quarters[-1]["previous_timestamp"] == "2026-03-28T23:45:00+00:00"
    # A span that is not whole local days moves back by its duration: two hours.
    hours = _series(
        client,
        headers,
        "energy-consumption",
        "2026-03-29T10:00:00Z",
        "2026-03-29T12:00:00Z",
        "hourly",
        "previous_period",
    )
    assert [m["previous_timestamp"] for m in hours] == [
        "2026-03-29T09:00:00+01:00",
        "2026-03-29T10:00:00+01:00",
    ]


def test_previous_period_of_a_whole_month(client, auth_headers: Headers, home) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(user_id=HOME)
    start, end = "2023-03-01T00:00:00Z", "2023-04-01T00:00:00%2B01:00"
    daily = _series(client, headers, "energy-consumption", start, end, "daily", "previous_period")
    assert len(daily) == 31
    pairs = _pairs(daily)
    assert pairs[0] == ("2023-03-01T00:00:00+00:00", pytest.approx(2.4), "2023-02-01T00:00:00+00:00", 2.4)
    # 26 March 2023 has 23 hours; 29, 30 and 31 March have no day in February and compare with its last.
    assert pairs[25] == ("2023-03-26T00:00:00+00:00", pytest.approx(59.8), "2023-02-26T00:00:00+00:00", 62.4)
    assert pairs[30] == ("2023-03-31T00:00:00+01:00", pytest.approx(74.4), "2023-02-28T00:00:00+00:00", 67.2)
    assert {p[2] for p in pairs[27:]} == {"2023-02-28T00:00:00+00:00"}
    monthly = _series(client, headers, "energy-consumption", start, end, "monthly", "previous_period")
    assert _pairs(monthly) == [
        ("2023-03-01T00:00:00+00:00", pytest.approx(1187.8), "2023-02-01T00:00:00+00:00", 974.4)
    ]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("energy-injection", "value"),
        ("energy-cost", "net_cost"),
        ("co2-footprint", "avoided"),
    ],
)
def test_every_compared_series_takes_the_earlier_buckets_own_figures(
    client, auth_headers: Headers, home, path: str, field: str
) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(user_id=HOME)
    compared = _series(
        client, headers, path, "2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z", "daily", "previous_year"
    )
    earlier = _series(
        client, headers, path, "2023-02-28T00:00:00Z", "2023-03-01T00:00:00Z", "daily", "previous_year"
    )
    assert compared[0]["previous_timestamp"] == earlier[0]["timestamp"] == "2023-02-28T00:00:00+00:00"
    assert compared[0]["previous"] == earlier[0]["value"]
    assert field in compared[0]


def test_the_balance_compares_all_its_fields_in_json_and_csv(client, auth_headers: Headers, home) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(user_id=HOME)
    start, end = "2026-03-29T00:00:00Z", "2026-03-29T23:00:00Z"
    (day,) = _series(client, headers, "energy-balance", start, end, "daily", "previous_period")
    assert day["consumption"] == pytest.approx(135.7)
    assert day["previous_timestamp"] == "2026-03-28T00:00:00+00:00"
    assert day["previous"] == {
        "consumption": pytest.approx(139.2),
        "grid_import": pytest.approx(139.2),
        "grid_export": 0.0,
        "generation": None,
        "self_consumed": None,
        "self_sufficiency": None,
        "self_consumption_ratio": None,
    }
    response = client.get(
        f"/api/statistics/energy-balance?user_ids={HOME}&start_date={start}&end_date={end}&compare_to=previous_period",
        headers={**headers, "Accept": "text/csv"},
    )
    header, row = response.text.strip().splitlines()
    assert header.endswith(
        ",previous_timestamp,previous_consumption,previous_grid_import,previous_grid_export,previous_generation,"
        "previous_self_consumed,previous_self_sufficiency,previous_self_consumption_ratio"
    )
    assert row.endswith(",2026-03-28T00:00:00+00:00,139.2,139.2,0.0,,,,")
    bad = client.get(
        f"/api/statistics/energy-consumption?user_ids={HOME}&start_date={start}&compare_to=last_week",
        headers=headers,
    )
    assert bad.status_code == 400 and "compare_to" in bad.json()["error"]


def test_the_summary_compares_the_month(client, auth_headers: Headers, home) -> None:  # type: ignore[no-untyped-def]
    response = client.get(
        f"/api/statistics/statistics-summary?user_id={HOME}&date=2024-03-15",
        headers=auth_headers(user_id=HOME),
    )
    assert response.status_code == 200, response.text
    month = response.json()["consumption_month"]
    # 1 to 15 March 2024: 24 x (0.1 x 120 + 15 x 1); March 2024 has 743 hours (summer time from the 31st).
    assert month["value"] == pytest.approx(648.0)
    assert month["coverage"] == round(15 * 24 / 743, 4)
    assert month["previous_month"] == {"value": pytest.approx(1740.0), "units": "kWh", "coverage": 1.0}
    assert month["same_month_last_year"] == {"value": pytest.approx(1187.8), "units": "kWh", "coverage": 1.0}
