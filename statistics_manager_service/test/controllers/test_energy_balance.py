"""GET /energy-balance against hand-computed registers, over a 23-hour local day."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.test.support.pipeline import account_message, meter_message, process, reading

PV_HOME = "pvbalance1"
NO_PV = "nopvhome01"
# Sunday 29 March 2026 is 23 hours long in Lisbon: local midnight to midnight is 00:00Z to 23:00Z.
DAY_START = dt.datetime(2026, 3, 29, 0, 0, tzinfo=dt.UTC)
QUARTERS = 92
Headers = Callable[..., dict[str, str]]


def quarter_increments(quarter: int) -> tuple[float, float, float]:
    """Import, export and generation (Wh) of one quarter hour of the PV home, by UTC hour."""
    hour = quarter // 4
    if hour == 9:
        return 50.0, 0.0, 100.0  # morning sun: all of it used, the rest from the grid
    if 10 <= hour < 17:
        return 0.0, 250.0, 400.0  # midday: 150 Wh used in the home, 250 Wh exported
    return 100.0, 0.0, 0.0  # night


def pv_readings() -> list[dict[str, Any]]:
    """Cumulative registers every 15 minutes over the day, starting from non-zero values."""
    imported, exported, generated = 5000.0, 300.0, 12000.0
    readings = []
    for quarter in range(QUARTERS + 1):
        readings.append(
            reading(DAY_START + dt.timedelta(minutes=15 * quarter), imported, exported, generated)
        )
        step = quarter_increments(quarter)
        imported, exported, generated = imported + step[0], exported + step[1], generated + step[2]
    return readings


@pytest.fixture
def homes(context: ServiceContext) -> ServiceContext:
    flat = [reading(DAY_START + dt.timedelta(minutes=15 * q), 100.0 * q) for q in range(QUARTERS + 1)]
    messages = [
        account_message(PV_HOME, tarif_type="simple", contracted_power="6.9 kVA", country="PT"),
        account_message(NO_PV, tarif_type="simple", contracted_power="3.45 kVA", country="PT"),
        meter_message(PV_HOME, pv_readings()),
        meter_message(NO_PV, flat),
    ]
    assert process(context, messages) == []
    return context


def _balance(client: Any, headers: dict[str, str], user_id: str, group_by: str, **extra: str) -> Any:
    query = "&".join(
        [
            f"user_ids={user_id}",
            "start_date=2026-03-29T00:00:00Z",
            "end_date=2026-03-29T23:00:00Z",
            f"group_by={group_by}",
            *(f"{name}={value}" for name, value in extra.items()),
        ]
    )
    response = client.get(f"/api/statistics/energy-balance?{query}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_day_balances_with_the_registers(client, auth_headers: Headers, homes) -> None:  # type: ignore[no-untyped-def]
    (series,) = _balance(client, auth_headers(user_id=PV_HOME), PV_HOME, "daily", include_quality="true")
    (day,) = series["metrics"]
    first, last = pv_readings()[0], pv_readings()[-1]
    # By hand: 60 night quarters x 100 Wh + 4 morning quarters x 50 Wh imported; 28 midday quarters
    # x 250 Wh exported; 4 x 100 Wh + 28 x 400 Wh generated.
    assert day["grid_import"] == pytest.approx(6.2)
    assert day["grid_import"] == pytest.approx(
        (last["energy_imported_wh"] - first["energy_imported_wh"]) / 1000
    )
    assert day["grid_export"] == pytest.approx(7.0)
    assert day["grid_export"] == pytest.approx(
        (last["energy_exported_wh"] - first["energy_exported_wh"]) / 1000
    )
    assert day["generation"] == pytest.approx(11.6)
    assert day["generation"] == pytest.approx(
        (last["energy_generated_wh"] - first["energy_generated_wh"]) / 1000
    )
    assert day["self_consumed"] == pytest.approx(11.6 - 7.0)
    assert day["consumption"] == pytest.approx(6.2 + 4.6) == day["value"]
    assert day["self_sufficiency"] == pytest.approx(4.6 / 10.8)
    assert day["self_consumption_ratio"] == pytest.approx(4.6 / 11.6)
    assert day["timestamp"] == "2026-03-29T00:00:00+00:00"
    assert day["coverage"] == 1.0  # all 23 hours of the day are measured


def test_every_quarter_hour_of_the_dst_day(client, auth_headers: Headers, homes) -> None:  # type: ignore[no-untyped-def]
    (series,) = _balance(client, auth_headers(service=True), PV_HOME, "15_mins")
    quarters = series["metrics"]
    assert len(quarters) == QUARTERS
    # The clocks jump from 01:00 to 02:00: the fifth quarter hour starts at 02:00 summer time.
    assert [q["timestamp"] for q in quarters[3:5]] == [
        "2026-03-29T00:45:00+00:00",
        "2026-03-29T02:00:00+01:00",
    ]
    for position, bucket in enumerate(quarters):
        imported, exported, generated = (wh / 1000 for wh in quarter_increments(position))
        self_consumed = generated - exported
        assert bucket["grid_import"] == pytest.approx(imported), position
        assert bucket["grid_export"] == pytest.approx(exported), position
        assert bucket["generation"] == pytest.approx(generated), position
        assert bucket["self_consumed"] == pytest.approx(self_consumed), position
        assert bucket["consumption"] == pytest.approx(imported + self_consumed), position
        assert bucket["self_sufficiency"] == pytest.approx(self_consumed / (imported + self_consumed)), (
            position
        )
        if generated == 0:
            assert bucket["self_consumption_ratio"] is None, position  # nothing generated: no ratio
        else:
            assert bucket["self_consumption_ratio"] == pytest.approx(self_consumed / generated), position
    # The quarters add up to the registers' differences over the day.
    first, last = pv_readings()[0], pv_readings()[-1]
    for field, register in (
        ("grid_import", "energy_imported_wh"),
        ("grid_export", "energy_exported_wh"),
        ("generation", "energy_generated_wh"),
    ):
        total = sum(q[field] for q in quarters)
        assert total == pytest.approx((last[register] - first[register]) / 1000), field
    assert [q["slot_number"] for q in quarters] == list(range(1, QUARTERS + 1))


def test_a_home_without_generation_register_has_null_generation(client, auth_headers: Headers, homes) -> None:  # type: ignore[no-untyped-def]
    (series,) = _balance(client, auth_headers(user_id=NO_PV), NO_PV, "hourly")
    assert len(series["metrics"]) == 23
    for hour in series["metrics"]:
        assert hour["consumption"] == pytest.approx(0.4) == hour["grid_import"]
        assert hour["grid_export"] == 0.0
        assert hour["generation"] is None
        assert hour["self_consumed"] is None
        assert hour["self_sufficiency"] is None
        assert hour["self_consumption_ratio"] is None


def test_csv_and_the_household_rule(client, auth_headers: Headers, homes) -> None:  # type: ignore[no-untyped-def]
    response = client.get(
        f"/api/statistics/energy-balance?user_ids={NO_PV}&start_date=2026-03-29T00:00:00Z"
        "&end_date=2026-03-29T23:00:00Z",
        headers={**auth_headers(user_id=NO_PV), "Accept": "text/csv"},
    )
    assert response.status_code == 200
    lines = response.text.strip().splitlines()
    assert lines[0] == (
        "user_id,timestamp,value,units,slot_number,consumption,grid_import,grid_export,generation,"
        "self_consumed,self_sufficiency,self_consumption_ratio"
    )
    assert lines[1] == f"{NO_PV},2026-03-29T00:00:00+00:00,9.2,kWh,1,9.2,9.2,0.0,,,,"
    forbidden = client.get(
        f"/api/statistics/energy-balance?user_ids={PV_HOME}&start_date=2026-03-29T00:00:00Z",
        headers=auth_headers(user_id=NO_PV),
    )
    assert forbidden.status_code == 403
    bad = client.get(
        f"/api/statistics/energy-balance?user_ids={PV_HOME}&start_date=2026-03-29T00:00:00Z&group_by=minutely",
        headers=auth_headers(user_id=PV_HOME),
    )
    assert bad.status_code == 400 and "group_by" in bad.json()["error"]
