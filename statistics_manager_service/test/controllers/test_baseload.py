"""GET /baseload: a known constant load under a varying one, priced from the tariff book by hand."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from statistics_manager_service.aggregation.tariff_book import load_tariff_book
from statistics_manager_service.context import ServiceContext
from statistics_manager_service.test.support.pipeline import account_message, meter_message, process, reading

LISBON = ZoneInfo("Europe/Lisbon")
SIMPLE = "basesimple"
BI_HOURLY = "basebihour"
START = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)  # winter time: local time is UTC
DAYS = 3
BASELOAD_W = 150.0
Headers = Callable[..., dict[str, str]]


def quarter_wh(at: dt.datetime) -> float:
    """The constant 150 W, 1 kW from 08:00 to 22:00 and a 200 W fridge cycle from 01:00 to 01:30."""
    wh = BASELOAD_W / 4
    if 8 <= at.hour < 22:
        wh += 250.0
    if at.hour == 1 and at.minute < 30:
        wh += 50.0
    return wh


def home_readings() -> list[dict[str, Any]]:
    readings, register = [], 1000.0
    for quarter in range(DAYS * 96 + 1):
        at = START + dt.timedelta(minutes=15 * quarter)
        readings.append(reading(at, register))
        register += quarter_wh(at)
    return readings


@pytest.fixture
def homes(context: ServiceContext) -> ServiceContext:
    messages = [
        account_message(SIMPLE, tarif_type="simple", contracted_power="6.9 kVA", country="PT"),
        account_message(BI_HOURLY, tarif_type="bi-hourly", contracted_power="6.9 kVA", country="PT"),
        meter_message(SIMPLE, home_readings()),
        meter_message(BI_HOURLY, home_readings()),
    ]
    assert process(context, messages) == []
    return context


def yearly_cost_by_hand(tariff: str, power_w: float) -> float:
    """Every quarter hour of the 365 local days from today at the price of its local date and hour."""
    entries = load_tariff_book().tariffs[tariff].energy_prices
    today = dt.datetime.now(LISBON).date()
    at = dt.datetime.combine(today, dt.time(), LISBON).astimezone(dt.UTC)
    end = dt.datetime.combine(today + dt.timedelta(days=365), dt.time(), LISBON).astimezone(dt.UTC)
    total = 0.0
    while at < end:
        local = at.astimezone(LISBON)
        prices = [e.prices for e in entries if e.valid_from <= local.date()][-1]
        if tariff == "simple":
            price = prices["normal"]
        else:
            price = prices["vazio"] if local.hour < 8 or local.hour >= 22 else prices["fora_vazio"]
        total += power_w / 1000 / 4 * price
        at += dt.timedelta(minutes=15)
    return total


def _baseload(client: Any, headers: dict[str, str], user_id: str, end: str = "2026-11-05T00:00:00Z") -> Any:
    response = client.get(
        f"/api/statistics/baseload?user_id={user_id}&start_date=2026-11-02T00:00:00Z&end_date={end}",
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("user_id, tariff", [(SIMPLE, "simple"), (BI_HOURLY, "bi-hourly")])
def test_the_constant_night_load_is_the_baseload(
    client, auth_headers: Headers, homes, user_id: str, tariff: str
) -> None:  # type: ignore[no-untyped-def]
    body = _baseload(client, auth_headers(user_id=user_id), user_id)
    assert body["value"] == pytest.approx(BASELOAD_W) and body["units"] == "W"
    assert body["nights"] == DAYS
    assert "median" in body["method"] and "00:00 and 05:00" in body["method"]
    # Each day: 96 x 37.5 Wh + 56 x 250 Wh + 2 x 50 Wh = 17.7 kWh; the baseload 0.15 kW x 24 h.
    assert body["consumption_kwh"] == pytest.approx(DAYS * 17.7)
    assert body["baseload_kwh"] == pytest.approx(DAYS * 3.6)
    assert body["share"] == pytest.approx(3.6 / 17.7)
    assert body["tariff_type"] == tariff
    hours = (
        dt.datetime.combine(dt.datetime.now(LISBON).date() + dt.timedelta(days=365), dt.time(), LISBON)
        - dt.datetime.combine(dt.datetime.now(LISBON).date(), dt.time(), LISBON)
    ).total_seconds() / 3600
    assert body["yearly_energy_kwh"] == pytest.approx(0.15 * hours)
    assert body["yearly_cost"] == pytest.approx(yearly_cost_by_hand(tariff, BASELOAD_W))
    assert body["yearly_cost_units"] == "EUR"


def test_the_bi_hourly_year_weighs_the_periods_by_their_hours(client, auth_headers: Headers, homes) -> None:  # type: ignore[no-untyped-def]
    body = _baseload(client, auth_headers(service=True), BI_HOURLY)
    latest = load_tariff_book().tariffs["bi-hourly"].energy_prices[-1]
    assert latest.valid_from <= dt.datetime.now(LISBON).date()  # the whole year at the latest prices
    # 10 of every 24 hours at vazio (22:00-08:00), 14 at fora de vazio; DST days cancel over a year.
    average = (10 * latest.prices["vazio"] + 14 * latest.prices["fora_vazio"]) / 24
    assert body["yearly_cost"] == pytest.approx(body["yearly_energy_kwh"] * average)


def test_without_a_measured_night_there_is_no_baseload_and_bad_input_is_named(
    client, auth_headers: Headers, homes
) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(user_id=SIMPLE)
    response = client.get(
        f"/api/statistics/baseload?user_id={SIMPLE}&start_date=2026-11-02T06:00:00Z&end_date=2026-11-02T20:00:00Z",
        headers=headers,
    )
    body = response.json()
    assert body["value"] is None and body["nights"] == 0 and body["yearly_cost"] is None
    assert body["consumption_kwh"] == pytest.approx(0.15 * 14 + 12 * 1.0)
    wide = client.get(
        f"/api/statistics/baseload?user_id={SIMPLE}&start_date=2024-01-01T00:00:00Z&end_date=2026-01-01T00:00:00Z",
        headers=headers,
    )
    assert wide.status_code == 400 and "narrow the range" in wide.json()["error"]
    backwards = client.get(
        f"/api/statistics/baseload?user_id={SIMPLE}&start_date=2026-11-03T00:00:00Z&end_date=2026-11-02T00:00:00Z",
        headers=headers,
    )
    assert backwards.status_code == 400 and "start_date" in backwards.json()["error"]
    other = client.get(
        f"/api/statistics/baseload?user_id={BI_HOURLY}&start_date=2026-11-02T00:00:00Z", headers=headers
    )
    assert other.status_code == 403
    unknown = client.get(
        "/api/statistics/baseload?user_id=nobody0000&start_date=2026-11-02T00:00:00Z",
        headers=auth_headers(service=True),
    )
    assert unknown.status_code == 404
