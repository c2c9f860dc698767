"""`GET /tariff-comparison`: every option priced against periods pyerse gives, the current option
against /energy-cost, the power advice, and the request rules, on both databases."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

import pytest
from pyerse.ciclos import Ciclo, Ciclo_Diario, Ciclo_Semanal
from pyerse.periodos_horarios import Periodos_Horarios

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.test.support.pipeline import account_message, meter_message, process, reading

USER = "compare001"
OTHER = "compare002"
Headers = Callable[..., dict[str, str]]
START, END = dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
BASE_KW = 0.5
# One hour at 3 kW: the highest 15-minute demand; 3.45 kVA covers it.
PEAK_HOUR = dt.datetime(2026, 1, 14, 12, tzinfo=dt.UTC)
PEAK_KW = 3.0
PRICES_2026 = {
    "simple": {"normal": 0.1651},
    "bi-hourly": {"fora_vazio": 0.2031, "vazio": 0.1055},
    "tri-hourly": {"ponta": 0.2500, "cheias": 0.1684, "vazio": 0.1055},
}
POWER_2026 = {3.45: 0.1840, 6.9: 0.3530}
TRI = {
    Periodos_Horarios.PONTA: "ponta",
    Periodos_Horarios.CHEIAS: "cheias",
    Periodos_Horarios.VAZIO_NORMAL: "vazio",
    Periodos_Horarios.SUPER_VAZIO: "vazio",
}


def kw_at(instant: dt.datetime) -> float:
    return PEAK_KW if PEAK_HOUR <= instant < PEAK_HOUR + dt.timedelta(hours=1) else BASE_KW


def load_household(context: ServiceContext) -> None:
    registered = account_message(
        USER, tarif_type="simple", contracted_power="6.9 kVA", effective_from="2020-01-01T00:00:00Z"
    )
    assert process(context, [registered, account_message(OTHER)]) == []
    at, register_wh, readings = START - dt.timedelta(hours=1), 1_000_000.0, []
    while at <= END + dt.timedelta(hours=1):
        readings.append(reading(at, register_wh))
        register_wh += kw_at(at) * 1000
        at += dt.timedelta(hours=1)
    assert process(context, [meter_message(USER, readings)]) == []


def oracle_energy_cost(tariff: str, cycle: type[Ciclo] | None) -> float:
    """Price every quarter hour with the period pyerse gives at its local start."""
    total, at, lisbon = 0.0, START, ZoneInfo("Europe/Lisbon")
    while at < END:
        kwh = kw_at(at) / 4
        if cycle is None:
            period = "normal"
        else:
            period = TRI[cycle.get_periodo_horario(at.astimezone(lisbon))]
            if tariff.startswith("bi-hourly"):
                period = "vazio" if period == "vazio" else "fora_vazio"
        total += kwh * PRICES_2026[tariff.removesuffix("-weekly")][period]
        at += dt.timedelta(minutes=15)
    return total


def test_every_option_is_priced_and_the_current_one_equals_energy_cost(  # type: ignore[no-untyped-def]
    client, context: ServiceContext, auth_headers: Headers
) -> None:
    load_household(context)
    params = {"user_id": USER, "start_date": "2026-01-01T00:00:00Z", "end_date": "2026-02-01T00:00:00Z"}
    response = client.get(
        "/api/statistics/tariff-comparison", params=params, headers=auth_headers(user_id=USER)
    )
    assert response.status_code == 200, response.json()
    answer = response.json()
    options = {option["tariff_type"]: option for option in answer["options"]}
    # No EnergyPrices for the zone: no dynamic option.
    assert set(options) == {"simple", "bi-hourly", "tri-hourly", "bi-hourly-weekly", "tri-hourly-weekly"}
    assert answer["current"] == "simple" and options["simple"]["current"]
    cycles = {
        "simple": None,
        "bi-hourly": Ciclo_Diario,
        "tri-hourly": Ciclo_Diario,
        "bi-hourly-weekly": Ciclo_Semanal,
        "tri-hourly-weekly": Ciclo_Semanal,
    }
    for tariff, cycle in cycles.items():
        assert options[tariff]["energy_cost"] == pytest.approx(
            oracle_energy_cost(tariff, cycle), abs=0.005
        ), tariff
        assert options[tariff]["fixed_cost"] == pytest.approx(31 * POWER_2026[6.9], abs=0.005)
    cheapest = min(options.values(), key=lambda option: option["net_cost"])
    assert answer["cheapest"] == cheapest["tariff_type"]
    assert answer["saving"] == pytest.approx(options["simple"]["net_cost"] - cheapest["net_cost"], abs=1e-9)

    # The current option is /energy-cost over the same range, to the cent.
    cost = client.get(
        "/api/statistics/energy-cost",
        params={"user_ids": USER, "start_date": params["start_date"], "end_date": params["end_date"]},
        headers=auth_headers(service=True),
    ).json()[0]["metrics"]
    for field in ("energy_cost", "fixed_cost", "export_revenue", "net_cost"):
        assert options["simple"][field] == pytest.approx(sum(day[field] for day in cost), abs=0.005), field

    power = answer["power"]
    assert power["peak_demand_kw"] == pytest.approx(PEAK_KW)
    assert power["peak_at"].startswith("2026-01-14T12:")
    assert (power["contracted_power_kva"], power["recommended_kva"]) == (6.9, 3.45)
    assert power["fixed_cost_recommended"] == pytest.approx(31 * POWER_2026[3.45], abs=0.005)
    assert power["saving"] == pytest.approx(31 * (POWER_2026[6.9] - POWER_2026[3.45]), abs=0.01)


def test_who_may_compare_and_bad_ranges(client, context: ServiceContext, auth_headers: Headers) -> None:  # type: ignore[no-untyped-def]
    assert process(context, [account_message(USER), account_message(OTHER)]) == []
    url = "/api/statistics/tariff-comparison"
    params = {"user_id": USER, "start_date": "2026-01-01T00:00:00Z", "end_date": "2026-02-01T00:00:00Z"}
    assert client.get(url, params=params, headers=auth_headers(user_id=OTHER)).status_code == 403
    assert client.get(url, params=params, headers=auth_headers(service=True)).status_code == 200
    for changed, name in (
        ({"end_date": "2025-12-01T00:00:00Z"}, "start_date"),
        ({"start_date": "2024-01-01T00:00:00Z"}, "366 days"),
        ({"start_date": "yesterday"}, "start_date"),
    ):
        bad = client.get(url, params={**params, **changed}, headers=auth_headers(service=True))
        assert bad.status_code == 400, changed
        assert name in bad.json()["error"]


def test_without_an_end_the_range_ends_with_the_quarter_hour_in_progress(  # type: ignore[no-untyped-def]
    client, context: ServiceContext, auth_headers: Headers
) -> None:
    """Every request of one quarter hour asks for the same range, so one cached answer serves them."""
    assert process(context, [account_message(USER)]) == []

    def quarter_end(at: dt.datetime) -> dt.datetime:
        return dt.datetime.fromtimestamp(-(-int(at.timestamp()) // 900) * 900, dt.UTC)

    before = quarter_end(dt.datetime.now(dt.UTC))
    start = (before - dt.timedelta(days=30)).isoformat().replace("+00:00", "Z")
    params = {"user_id": USER, "start_date": start}
    response = client.get(
        "/api/statistics/tariff-comparison", params=params, headers=auth_headers(user_id=USER)
    )
    after = quarter_end(dt.datetime.now(dt.UTC))
    assert response.status_code == 200, response.json()
    end = dt.datetime.fromisoformat(response.json()["end"])
    assert end in (before, after) and end.minute % 15 == 0 and end.second == 0
