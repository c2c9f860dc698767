"""Every statistics endpoint against ground truth built through the real handlers."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from statistics_manager_service.aggregation.tariff_book import load_tariff_book
from statistics_manager_service.app import create_app
from statistics_manager_service.context import ServiceContext
from statistics_manager_service.event_consumer.runner import build_processor, in_process_publisher
from statistics_manager_service.event_producers.relay import OutboxRelay
from statistics_manager_service.test.conftest import make_settings
from statistics_manager_service.test.support.oracle import bucket_energy_kwh
from statistics_manager_service.test.support.pipeline import (
    account_message,
    meter_message,
    process,
    reading,
    signal_message,
)

LISBON = ZoneInfo("Europe/Lisbon")
PV_HOME = "pvhome0001"
FLAT = "flat000001"
START = dt.datetime(2026, 3, 28, 0, 0, tzinfo=dt.UTC)  # Saturday; Sunday 29 March has 23 hours in Lisbon
HOURS = 72
Headers = Callable[..., dict[str, str]]


def pv_readings() -> list[dict[str, Any]]:
    """15-minute readings of a PV home: 0.2 kWh import per quarter at night, export at midday."""
    readings = []
    imported = exported = generated = 0.0
    for quarter in range(HOURS * 4 + 1):
        at = START + dt.timedelta(minutes=15 * quarter)
        readings.append(
            {
                **reading(
                    at,
                    imported,
                    exported,
                    generated_wh=generated,
                    power_w=800.0,
                    voltage_v=229.0 + quarter % 3,
                ),
                "power_exported_w": 100.0,
            }
        )
        hour = at.hour
        if 10 <= hour < 16:
            generated += 500.0
            exported += 300.0  # 200 Wh of the 500 Wh generated is consumed in the home
        else:
            imported += 200.0
    return readings


def flat_readings() -> list[dict[str, Any]]:
    """A constant 1 kWh per hour household without PV."""
    return [
        reading(START + dt.timedelta(minutes=15 * q), 250.0 * q, power_w=1000.0) for q in range(HOURS * 4 + 1)
    ]


@pytest.fixture
def households(context: ServiceContext) -> ServiceContext:
    dead = process(
        context,
        [
            account_message(PV_HOME, tarif_type="bi-hourly", contracted_power="6.9 kVA", country="PT"),
            account_message(FLAT, tarif_type="simple", contracted_power="3.45 kVA", country="PT"),
            meter_message(PV_HOME, pv_readings()),
            meter_message(FLAT, flat_readings()),
        ],
    )
    assert dead == []
    return context


def _get(client: Any, path: str, headers: dict[str, str]) -> Any:
    response = client.get("/api/statistics" + path, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _epoch(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp())


def _expected_consumption(readings: list[dict[str, Any]]) -> dict[int, float]:
    """Consumption per 15-minute bucket = import + (generated - exported), from the oracle."""

    def series(key: str) -> dict[int, float]:
        return bucket_energy_kwh((_epoch(r["timestamp"]), r.get(key, 0.0)) for r in readings)

    imported, exported, generated = (
        series("energy_imported_wh"),
        series("energy_exported_wh"),
        series("energy_generated_wh"),
    )
    return {s: imported[s] + max(generated[s] - exported[s], 0.0) for s in imported}


def test_daily_consumption_is_the_local_day_sum_with_offsets(
    client, auth_headers: Headers, households
) -> None:  # type: ignore[no-untyped-def]
    body = _get(
        client,
        f"/energy-consumption?user_ids={PV_HOME}&start_date=2026-03-28T00:00:00Z&end_date=2026-03-31T00:00:00Z",
        auth_headers(user_id=PV_HOME),
    )
    metrics = body[0]["metrics"]
    assert [m["timestamp"] for m in metrics] == [
        "2026-03-28T00:00:00+00:00",
        "2026-03-29T00:00:00+00:00",
        "2026-03-30T00:00:00+01:00",
        "2026-03-31T00:00:00+01:00",
    ]
    assert [m["slot_number"] for m in metrics] == [1, 2, 3, 4]
    assert {m["units"] for m in metrics} == {"kWh"}
    expected = _expected_consumption(pv_readings())
    bounds = [_epoch(m["timestamp"]) for m in metrics] + [_epoch("2026-04-01T00:00:00+01:00")]
    for metric, low, high in zip(metrics, bounds, bounds[1:], strict=False):
        assert metric["value"] == pytest.approx(
            sum(v for s, v in expected.items() if low <= s < high), abs=1e-6
        )
    # Hand check of the first day: 18 night hours × 0.8 kWh import + 6 sunny hours × 0.8 kWh self-consumed.
    assert metrics[0]["value"] == pytest.approx(18 * 0.8 + 6 * 0.8)


def test_injection_by_hour_and_15_minutes(client, auth_headers: Headers, households) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(user_id=PV_HOME)
    hourly = _get(
        client,
        f"/energy-injection?user_ids={PV_HOME}&start_date=2026-03-28T09:00:00Z&end_date=2026-03-28T17:00:00Z&group_by=hourly",
        headers,
    )[0]["metrics"]
    assert [m["value"] for m in hourly] == pytest.approx([0.0] + [1.2] * 6 + [0.0])  # 4 × 300 Wh
    quarter = _get(
        client,
        f"/energy-injection?user_ids={PV_HOME}&start_date=2026-03-28T10:00:00Z&end_date=2026-03-28T10:30:00Z&group_by=15_mins",
        headers,
    )[0]["metrics"]
    assert [m["value"] for m in quarter] == pytest.approx([0.3, 0.3])
    assert quarter[1]["timestamp"] == "2026-03-28T10:15:00+00:00"


def test_coarse_groupings_add_up(client, auth_headers: Headers, households) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(service=True)
    total = sum(_expected_consumption(flat_readings()).values())
    assert total == pytest.approx(HOURS * 1.0)
    for group_by in ("weekly", "monthly", "yearly"):
        metrics = _get(
            client,
            f"/energy-consumption?user_ids={FLAT}&start_date=2026-01-01T00:00:00Z&end_date=2026-12-31T00:00:00Z&group_by={group_by}",
            headers,
        )[0]["metrics"]
        assert sum(m["value"] for m in metrics) == pytest.approx(total), group_by
    weekly = _get(
        client,
        f"/energy-consumption?user_ids={FLAT}&start_date=2026-03-28T00:00:00Z&end_date=2026-04-05T00:00:00Z&group_by=weekly",
        headers,
    )[0]["metrics"]
    assert [m["timestamp"] for m in weekly] == [
        "2026-03-23T00:00:00+00:00",
        "2026-03-30T00:00:00+01:00",
    ]  # ISO weeks start Monday
    assert weekly[0]["value"] == pytest.approx(47.0)  # Saturday 24 h + Sunday 23 h


def test_power_and_voltage_series_and_latest_readings(client, auth_headers: Headers, households) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(user_id=PV_HOME)
    power = _get(
        client,
        f"/power-consumption?user_ids={PV_HOME}&start_date=2026-03-28T00:00:00Z&end_date=2026-03-28T02:00:00Z&group_by=hourly",
        headers,
    )[0]["metrics"]
    assert [(m["value"], m["max"], m["units"]) for m in power] == [(800.0, 800.0, "W"), (800.0, 800.0, "W")]
    voltage = _get(
        client,
        f"/voltage?user_ids={PV_HOME}&start_date=2026-03-28T00:00:00Z&end_date=2026-03-28T00:45:00Z&group_by=15_mins",
        headers,
    )[0]["metrics"]
    assert [(m["value"], m["min"], m["max"]) for m in voltage] == [
        (229.0, 229.0, 229.0),
        (230.0, 230.0, 230.0),
        (231.0, 231.0, 231.0),
    ]
    last = _get(client, f"/energy-consumption-last?user_ids={PV_HOME}", headers)
    final = pv_readings()[-1]
    assert last == [
        {
            "user_id": PV_HOME,
            "timestamp": "2026-03-31T01:00:00+01:00",
            "value": pytest.approx(final["energy_imported_wh"] / 1000),  # the meter's import register
            "units": "kWh",
            "consumption_total": pytest.approx(
                (final["energy_imported_wh"] + final["energy_generated_wh"] - final["energy_exported_wh"])
                / 1000
            ),
        }
    ]
    injection_last = _get(client, f"/energy-injection-last?user_ids={PV_HOME}", headers)[0]
    assert injection_last["value"] == pytest.approx(final["energy_exported_wh"] / 1000)
    assert _get(client, f"/power-consumption-last?user_ids={PV_HOME}", headers)[0]["value"] == 800.0
    assert _get(client, f"/power-injection-last?user_ids={PV_HOME}", headers)[0]["value"] == 100.0
    assert _get(client, f"/voltage-last?user_ids={PV_HOME}", headers)[0]["units"] == "V"


def test_cost_uses_the_tariff_book_and_adds_up(client, auth_headers: Headers, households) -> None:  # type: ignore[no-untyped-def]
    book = load_tariff_book()
    body = _get(
        client,
        f"/energy-cost?user_ids={FLAT}&start_date=2026-03-28T00:00:00Z&end_date=2026-03-29T00:00:00Z",
        auth_headers(user_id=FLAT),
    )
    day = body[0]["metrics"][0]
    assert day["units"] == "EUR"
    assert day["value"] == day["net_cost"]
    assert day["net_cost"] == pytest.approx(day["energy_cost"] + day["fixed_cost"] - day["export_revenue"])
    # 24 kWh at the simple price in force on the day, plus the 3.45 kVA daily power charge.
    price = next(
        e for e in reversed(book.tariffs["simple"].energy_prices) if e.valid_from <= dt.date(2026, 3, 28)
    )
    charge = next(e for e in reversed(book.power_charges) if e.valid_from <= dt.date(2026, 3, 28))
    assert day["energy_cost"] == pytest.approx(24 * next(iter(price.prices.values())))
    assert day["fixed_cost"] == pytest.approx(next(v for k, v in charge.prices.items() if float(k) == 3.45))


def test_co2_footprint_follows_the_intensity_series(client, auth_headers: Headers, households) -> None:  # type: ignore[no-untyped-def]
    intensity = {
        "zone": "PT",
        "kind": "actual",
        "resolution_minutes": 60,
        "values": [
            {"timestamp": (START + dt.timedelta(hours=h)).isoformat(), "value": 100.0 + h} for h in range(24)
        ],
    }
    assert process(households, [signal_message("CarbonIntensity", intensity)]) == []
    day = _get(
        client,
        f"/co2-footprint?user_ids={FLAT}&start_date=2026-03-28T00:00:00Z&end_date=2026-03-29T00:00:00Z",
        auth_headers(user_id=FLAT),
    )[0]["metrics"][0]
    assert day["units"] == "kgCO2eq"
    assert day["value"] == pytest.approx(sum(1.0 * (100.0 + h) / 1000 for h in range(24)))  # 1 kWh each hour
    assert day["avoided"] == 0.0
    pv_day = _get(
        client,
        f"/co2-footprint?user_ids={PV_HOME}&start_date=2026-03-28T00:00:00Z&end_date=2026-03-29T00:00:00Z",
        auth_headers(user_id=PV_HOME),
    )[0]["metrics"][0]
    assert pv_day["avoided"] == pytest.approx(sum(0.8 * (100.0 + h) / 1000 for h in range(10, 16)))


def test_summary_of_a_day(client, auth_headers: Headers, households) -> None:  # type: ignore[no-untyped-def]
    summary = _get(
        client, f"/statistics-summary?user_id={PV_HOME}&date=2026-03-29", auth_headers(user_id=PV_HOME)
    )
    daily = _get(
        client,
        f"/energy-consumption?user_ids={PV_HOME}&start_date=2026-03-28T00:00:00Z&end_date=2026-03-30T00:00:00Z",
        auth_headers(user_id=PV_HOME),
    )[0]["metrics"]
    cost = _get(
        client,
        f"/energy-cost?user_ids={PV_HOME}&start_date=2026-03-29T00:00:00Z&end_date=2026-03-29T12:00:00Z",
        auth_headers(user_id=PV_HOME),
    )[0]["metrics"]
    assert summary["timezone"] == "Europe/Lisbon"
    assert summary["date"] == "2026-03-29"
    # 29 March has 23 hours in Lisbon, all of them measured; March has 743 hours, a year 8760.
    assert summary["cost_today"] == {
        "value": pytest.approx(cost[0]["net_cost"]),
        "units": "EUR",
        "coverage": 1.0,
    }
    assert summary["injection_month"]["coverage"] == round(47 / 743, 4)
    assert summary["consumption_year"]["coverage"] == round(47 / 8760, 4)
    assert summary["consumption_year"]["value"] == pytest.approx(daily[0]["value"] + daily[1]["value"])
    assert summary["injection_month"]["value"] == pytest.approx(2 * 6 * 1.2)
    ratio = summary["self_sufficiency_year"]
    assert ratio["units"] == "ratio"
    assert ratio["value"] == pytest.approx(2 * 6 * 0.8 / summary["consumption_year"]["value"])


def test_empty_ranges_quality_and_csv(client, auth_headers: Headers, households) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(service=True)
    empty = _get(
        client,
        f"/energy-consumption?user_ids={FLAT}&start_date=2025-01-01T00:00:00Z&end_date=2025-01-02T00:00:00Z",
        headers,
    )
    assert empty == [{"user_id": FLAT, "metrics": []}]
    quality = _get(
        client,
        f"/energy-consumption?user_ids={FLAT}&start_date=2026-03-28T00:00:00Z&end_date=2026-03-28T01:00:00Z&group_by=hourly&include_quality=true",
        headers,
    )
    bucket = quality[0]["metrics"][0]
    assert bucket["coverage"] == 1.0 and bucket["reading_count"] == 4 and bucket["reset_detected"] is False
    assert dt.datetime.fromisoformat(bucket["last_updated"])
    response = client.get(
        f"/api/statistics/energy-consumption?user_ids={FLAT},{PV_HOME}&start_date=2026-03-28T00:00:00Z&end_date=2026-03-30T00:00:00Z",
        headers={**headers, "Accept": "text/csv"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.strip().splitlines()
    assert lines[0] == "user_id,timestamp,value,units,slot_number"
    assert len(lines) == 1 + 2 * 3
    assert lines[1].startswith(f"{FLAT},2026-03-28T00:00:00+00:00,24.0,kWh,1")


def test_limits_are_400_with_advice(client, auth_headers: Headers, households) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(service=True)
    many = ",".join(f"user{i:06d}" for i in range(101))
    too_many = client.get(
        f"/api/statistics/energy-consumption?user_ids={many}&start_date=2026-03-28T00:00:00Z", headers=headers
    )
    assert too_many.status_code == 400 and "user_ids" in too_many.json()["error"]
    huge = client.get(
        f"/api/statistics/energy-consumption?user_ids={FLAT}&start_date=2020-01-01T00:00:00Z&end_date=2026-01-01T00:00:00Z&group_by=15_mins",
        headers=headers,
    )
    assert huge.status_code == 400
    assert "narrow the date range" in huge.json()["error"]


def test_the_mobile_app_calls_work_as_it_reads_them(client, auth_headers: Headers, households) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(user_id=PV_HOME)
    last = _get(client, f"/power-consumption-last?user_ids={PV_HOME}", headers)
    assert isinstance(last[0]["value"], float) and last[0]["units"] in ("W", "kW")
    for group_by in ("hourly", "daily"):
        body = _get(
            client,
            f"/power-consumed-real?user_id={PV_HOME}&start_date=2026-03-29T00:00:00Z&end_date=2026-03-30T00:00:00Z&group_by={group_by}",
            headers,
        )
        real = body[0]["real"]
        assert real, group_by
        for item in real:
            assert isinstance(item["energy"], float) and item["units"] == "kWh"
            stamp = item["timestamp"]
            assert stamp[4] == "-" and stamp[10] == "T" and stamp[13] == ":"
            assert dt.date.fromisoformat(stamp[:10]) and len(stamp[11:16]) == 5  # the app's label slices
    forecast = client.get(
        "/api/statistics/ecosignal-forecast?forecast_day=2026-01-21T00:00:00.000Z", headers=headers
    )
    assert forecast.status_code == 200 and forecast.json() == []


def test_ecosignal_forecast_prefers_forecasts(client, auth_headers: Headers, households) -> None:  # type: ignore[no-untyped-def]
    day = dt.datetime(2026, 3, 28, tzinfo=dt.UTC)
    actual = {
        "zone": "PT",
        "kind": "actual",
        "values": [
            {"timestamp": (day + dt.timedelta(hours=h)).isoformat(), "value": 150.0} for h in range(3)
        ],
    }
    forecast = {
        "zone": "PT",
        "kind": "forecast",
        "values": [{"timestamp": (day + dt.timedelta(hours=h)).isoformat(), "value": 90.0} for h in range(2)],
    }
    assert (
        process(
            households,
            [signal_message("CarbonIntensity", actual), signal_message("CarbonIntensity", forecast)],
        )
        == []
    )
    for day_param in ("2026-03-28", "2026-03-28T00:00:00.000Z"):
        items = _get(
            client, f"/ecosignal-forecast?forecast_day={day_param}&zone=PT", auth_headers(user_id=FLAT)
        )
        assert [(i["datetime"], i["value"], i["quality"]) for i in items[:4]] == [
            ("2026-03-28T00:00:00Z", 90.0, 0),
            ("2026-03-28T01:00:00Z", 90.0, 0),
            ("2026-03-28T02:00:00Z", 150.0, 0),
            ("2026-03-28T03:00:00Z", 150.0, 2),  # the rest of the day: the nearest value
        ]
        assert len(items) == 24
        assert {i["unit"] for i in items} == {"gCO₂eq/kWh"}


def _relay(context: ServiceContext) -> int:
    relay = OutboxRelay(
        context.session_factory,
        in_process_publisher(build_processor(context), context.settings.kafka_topic_prefix),
    )
    return relay.relay_once()


def test_producer_endpoints_queue_events_handled_in_process(
    client, auth_headers: Headers, households
) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(user_id=FLAT)
    response = client.post(
        f"/api/statistics/mock-consumption-curve-producer?user_id={FLAT}&start_date=2026-03-28T00:00:00Z&delivery_time=60",
        headers=headers,
    )
    assert response.status_code == 200
    assert response.json()["event_type"] == "ComputeMockConsumptionCurveEvent"
    assert uuid.UUID(response.json()["event_id"])
    assert _relay(households) >= 1
    body = _get(
        client,
        f"/energy-consumed-forecast-vs-real?user_ids={FLAT}&start_date=2026-03-28T00:00:00Z&end_date=2026-03-29T00:00:00Z&group_by=hourly",
        headers,
    )
    assert len(body[0]["forecast"]) == 24
    assert len(body[0]["real"]) == 24
    again = client.post(
        f"/api/statistics/mock-consumption-curve-producer?user_id={FLAT}&start_date=2026-03-28T00:00:00Z&delivery_time=60",
        headers=headers,
    )
    assert again.status_code == 200
    _relay(households)
    assert (
        _get(
            client,
            f"/energy-consumed-forecast-vs-real?user_ids={FLAT}&start_date=2026-03-28T00:00:00Z&end_date=2026-03-29T00:00:00Z&group_by=hourly",
            headers,
        )
        == body
    )  # deterministic

    recompute = client.post(
        f"/api/statistics/users-get-real-data-producer?user_id={FLAT}&start_datetime=2026-03-28 00:00:00&end_datetime=2026-03-29T00:00:00Z",
        headers=headers,
    )
    assert recompute.status_code == 200
    assert (
        client.post(
            f"/api/statistics/users-get-real-data-producer?user_id={PV_HOME}&start_datetime=2026-03-28T00:00:00Z",
            headers=headers,
        ).status_code
        == 403
    )
    assert (
        client.post(
            "/api/statistics/users-get-real-data-producer?user_id=nobody0000&start_datetime=2026-03-28T00:00:00Z",
            headers=auth_headers(service=True),
        ).status_code
        == 404
    )
    unconfigured = client.post(
        f"/api/statistics/trigger-computed-forecast-producer?user_id={FLAT}&forecast_day=2026-03-28",
        headers=headers,
    )
    # Without a forecast service the built-in baseline needs the four weeks before the day.
    assert unconfigured.status_code == 422
    assert "no consumption" in unconfigured.json()["error"]
    assert "FORECAST_API_URL" in unconfigured.json()["error"]


@pytest.fixture
def forecast_api() -> Iterator[str]:
    """A stand-in for the external forecast service (a third party we do not run)."""
    calls: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            calls.append(self.path)
            if len(calls) == 1:
                self.send_response(503)  # the first attempt fails: the handler must retry
                self.end_headers()
                return
            values = [
                {"timestamp": (START + dt.timedelta(minutes=15 * q)).isoformat(), "energy_kwh": 0.25}
                for q in range(96)
            ]
            body = json.dumps({"values": values}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/forecast"
    server.shutdown()


def test_forecasts_are_fetched_with_retries(
    households: ServiceContext, auth_headers: Headers, forecast_api: str
) -> None:
    settings = make_settings(
        households.settings.database_url, forecast_api_url=forecast_api, forecast_api_timeout_s=2.0
    )
    households.settings = settings
    households.forget_loaded_state()
    with create_app(settings, context=households, validate_responses=True).test_client() as client:
        response = client.post(
            f"/api/statistics/trigger-computed-forecast-producer?user_id={FLAT}&forecast_day=2026-03-28",
            headers=auth_headers(user_id=FLAT),
        )
        assert response.status_code == 200
        assert _relay(households) >= 1
        body = _get(
            client,
            f"/power-consumed-real?user_id={FLAT}&start_date=2026-03-28T00:00:00Z&end_date=2026-03-29T00:00:00Z",
            auth_headers(user_id=FLAT),
        )
        assert body[0]["forecast"] == [
            {
                "timestamp": "2026-03-28T00:00:00+00:00",
                "energy": 24.0,
                "units": "kWh",
                "slot_number": 1,
                "origin": "external",
            }
        ]
        assert body[0]["real"][0]["energy"] == pytest.approx(24.0)


def test_forecast_vs_real_pages_through_every_household_for_a_service(
    client, auth_headers: Headers, households
) -> None:  # type: ignore[no-untyped-def]
    query = "/api/statistics/energy-consumed-forecast-vs-real?start_date=2026-03-28T00:00:00Z&end_date=2026-03-29T00:00:00Z&page_size=1"
    first = client.get(query + "&page=1", headers=auth_headers(service=True))
    second = client.get(query + "&page=2", headers=auth_headers(service=True))
    beyond = client.get(query + "&page=3", headers=auth_headers(service=True))
    assert first.headers["X-Total-Count"] == "2"
    assert [item["user_id"] for item in first.json() + second.json()] == sorted([PV_HOME, FLAT])
    assert beyond.json() == []
    own = client.get(query, headers=auth_headers(user_id=FLAT))
    assert [item["user_id"] for item in own.json()] == [FLAT]
    assert own.json()[0]["real"][0]["energy"] == pytest.approx(24.0)
