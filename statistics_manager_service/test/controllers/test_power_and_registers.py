"""Power agrees with energy, a maximum is only ever measured, and `-last` answers the meter's registers.

A PV household over one UTC day (Lisbon is UTC+0 in January): at night the grid supplies everything
and the hub samples the import power; from 10:00 to 14:00 the panels produce and part of it is used
in the home; from 18:00 to 20:00 the hub sends no power sample. Expected figures are computed here from
the registers.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.test.support.pipeline import account_message, meter_message, process, reading

PV = "powerhome1"
DAY = dt.datetime(2026, 1, 14, tzinfo=dt.UTC)
Headers = Callable[..., dict[str, str]]


def pv_day() -> list[dict[str, Any]]:
    """Quarter-hour readings: (import, export, generated) register steps per quarter and power samples."""
    readings, imported, exported, generated = [], 0.0, 0.0, 0.0
    for quarter in range(96 + 1):
        at = DAY + dt.timedelta(minutes=15 * quarter)
        hour = at.hour
        sample = None if 18 <= hour < 20 else 400.0 + 10 * (quarter % 4)
        if 10 <= hour < 14:
            sample = 0.0  # nothing drawn from the grid while the panels cover the home
        readings.append(reading(at, imported, exported, generated_wh=generated, power_w=sample))
        if 10 <= hour < 14:
            generated, exported = generated + 300.0, exported + 180.0  # 120 Wh self-consumed
        else:
            imported += 100.0 + 5 * (quarter % 4)
    return readings


def consumption_wh_per_hour(readings: list[dict[str, Any]]) -> dict[int, float]:
    """Import plus self-consumed generation (generated - exported, never negative) per UTC hour."""
    per_hour: dict[int, float] = {}
    for before, after in itertools.pairwise(readings):
        hour = dt.datetime.fromisoformat(before["timestamp"]).hour
        self_consumed = max(
            (after["energy_generated_wh"] - before["energy_generated_wh"])
            - (after["energy_exported_wh"] - before["energy_exported_wh"]),
            0.0,
        )
        consumed = after["energy_imported_wh"] - before["energy_imported_wh"] + self_consumed
        per_hour[hour] = per_hour.get(hour, 0.0) + consumed
    return per_hour


@pytest.fixture
def pv_home(context: ServiceContext) -> list[dict[str, Any]]:
    readings = pv_day()
    dead = process(
        context,
        [account_message(PV, tarif_type="simple", country="PT"), meter_message(PV, readings)],
    )
    assert dead == []
    return readings


def _metrics(client: Any, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get("/api/statistics" + path, headers=headers)
    assert response.status_code == 200, response.text
    metrics: list[dict[str, Any]] = response.json()[0]["metrics"]
    return metrics


def test_consumption_power_is_consumption_energy_over_time(client, pv_home, auth_headers: Headers) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(user_id=PV)
    query = f"user_ids={PV}&start_date=2026-01-14T00:00:00Z&end_date=2026-01-15T00:00:00Z&group_by=hourly"
    power = _metrics(client, f"/power-consumption?{query}", headers)
    energy = _metrics(client, f"/energy-consumption?{query}", headers)
    expected = consumption_wh_per_hour(pv_home)
    assert len(power) == 24
    for hour, (bucket, consumed) in enumerate(zip(power, energy, strict=True)):
        # Mean power over an hour in W equals the hour's consumption in Wh.
        assert bucket["value"] == pytest.approx(expected[hour], abs=1e-6), hour
        assert bucket["value"] == pytest.approx(consumed["value"] * 1000, abs=1e-6), hour
        if 10 <= hour < 14:
            assert bucket["max"] is None  # the panels covered part of it: no sample shows the peak
            assert bucket["grid_import"] == 0.0
        elif 18 <= hour < 20:
            assert bucket["max"] is None  # no power sample at all in the hour
        else:
            assert bucket["max"] == pytest.approx(430.0)  # the highest import sample of the hour
            assert bucket["grid_import"] is not None

    day = _metrics(client, f"/power-consumption?{query.replace('hourly', 'daily')}", headers)
    assert day[0]["value"] == pytest.approx(sum(expected.values()) / 24, abs=1e-6)


def test_energy_last_answers_the_registers_across_a_meter_replacement(
    client, context, auth_headers: Headers
) -> None:  # type: ignore[no-untyped-def]
    old_meter = [reading(DAY + dt.timedelta(minutes=15 * q), 5000.0 + 100.0 * q, 20.0 * q) for q in range(9)]
    # The new meter starts counting from 12 Wh import and 0 Wh export.
    new_meter = [
        reading(DAY + dt.timedelta(hours=2, minutes=15 * q), 12.0 + 100.0 * q, 20.0 * q) for q in range(1, 5)
    ]
    dead = process(
        context,
        [account_message("meterswap1", country="PT"), meter_message("meterswap1", old_meter + new_meter)],
    )
    assert dead == []
    headers = auth_headers(user_id="meterswap1")
    response = client.get("/api/statistics/energy-consumption-last?user_ids=meterswap1", headers=headers)
    assert response.json() == [
        {"user_id": "meterswap1", "timestamp": "2026-01-14T03:00:00+00:00", "value": 0.412, "units": "kWh"}
    ]
    response = client.get("/api/statistics/energy-injection-last?user_ids=meterswap1", headers=headers)
    assert response.json()[0]["value"] == 0.08
