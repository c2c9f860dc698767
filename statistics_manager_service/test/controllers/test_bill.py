"""`GET /bill`: the taxes against pyerse (an independent implementation of the Portuguese VAT, IEC,
CAV and DGEG rules), the energy lines against /energy-cost, an open period's projection, and the
request rules, on both databases."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from pyerse.comercializador import Opcao_Horaria, Plano, Tarifa

from statistics_manager_service.aggregation import load_tariff_book
from statistics_manager_service.context import ServiceContext
from statistics_manager_service.test.support.pipeline import account_message, meter_message, process, reading

USER = "billuser01"
OTHER = "billuser02"
BOOK = load_tariff_book()
Headers = Callable[..., dict[str, str]]
# 2026 prices of the tariff book (EUR/kWh, EUR/day): the pyerse plan is given the same prices.
SIMPLE_2026 = 0.1651
BI_HOURLY_2026 = {"vazio": 0.1055, "fora_vazio": 0.2031}
POWER_2026 = {3.45: 0.1840, 6.9: 0.3530, 10.35: 0.5215}


def hourly_readings(start: dt.datetime, end: dt.datetime, kwh_per_day: float) -> list[dict[str, object]]:
    """Hourly cumulative registers at a constant consumption, from `start` to `end` inclusive."""
    hours = int((end - start).total_seconds() // 3600)
    per_hour_wh = kwh_per_day * 1000 / 24
    return [reading(start + dt.timedelta(hours=h), 1_000_000 + h * per_hour_wh) for h in range(hours + 1)]


def load_household(
    context: ServiceContext,
    tariff: str,
    kva: float,
    start: dt.datetime,
    end: dt.datetime,
    kwh_per_day: float,
    **terms: object,
) -> None:
    registered = account_message(
        USER,
        tarif_type=tariff,
        contracted_power=f"{kva:g} kVA",
        effective_from="2020-01-01T00:00:00Z",
        **terms,
    )
    assert process(context, [registered, account_message(OTHER)]) == []
    readings = hourly_readings(start - dt.timedelta(hours=2), end + dt.timedelta(hours=2), kwh_per_day)
    assert process(context, [meter_message(USER, readings)]) == []


def pyerse_total(kva: float, option: Opcao_Horaria, kwh: dict[str, float], days: int, large: bool) -> float:
    """The bill after taxes as pyerse computes it (energy with VAT and IEC, fixed costs with VAT)."""
    plan = Plano(kva, option, None if option == Opcao_Horaria.SIMPLES else "Ciclo Diário")
    tariffs = {"normal": Tarifa.NORMAL, "vazio": Tarifa.VAZIO, "fora_vazio": Tarifa.FORA_DE_VAZIO}
    prices = {"normal": SIMPLE_2026, **BI_HOURLY_2026}
    plan.definir_custo_potencia(POWER_2026[kva])
    total_kwh = sum(kwh.values())
    energy = 0.0
    for period, quantity in kwh.items():
        plan.definir_custo_kWh(tariffs[period], prices[period])
        energy += plan.custo_kWh_final(tariffs[period], quantity, large, total_kwh=total_kwh, dias=days)
    return float(energy + plan.custos_fixos(days))


def energy_cost(client, headers: Headers, start: dt.datetime, end: dt.datetime) -> float:  # type: ignore[no-untyped-def]
    """The sum of /energy-cost's energy_cost over the range, by local day."""
    response = client.get(
        "/api/statistics/energy-cost",
        params={
            "user_ids": USER,
            "start_date": start.isoformat().replace("+00:00", "Z"),
            "end_date": end.isoformat().replace("+00:00", "Z"),
            "group_by": "daily",
        },
        headers=headers(service=True),
    )
    assert response.status_code == 200
    return sum(bucket["energy_cost"] for bucket in response.json()[0]["metrics"])


@pytest.mark.parametrize(
    ("kva", "kwh_per_day", "large_family"),
    [
        (3.45, 5.0, False),  # 140 kWh: every kWh at the reduced rate, and the power term too
        (6.9, 5.0, False),  # the power term at the normal rate
        (6.9, 15.0, False),  # 420 kWh: over the 186.7 kWh of 28 days
        (6.9, 15.0, True),  # a large family: 280 kWh at the reduced rate
        (10.35, 15.0, False),  # above 6.9 kVA: no reduced rate at all
    ],
)
def test_a_28_day_simple_bill_has_the_taxes_pyerse_computes(  # type: ignore[no-untyped-def]
    client, context: ServiceContext, auth_headers: Headers, kva: float, kwh_per_day: float, large_family: bool
) -> None:
    start, end = dt.datetime(2026, 2, 1, tzinfo=dt.UTC), dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    load_household(context, "simple", kva, start, end, kwh_per_day)
    response = client.get(
        "/api/statistics/bill",
        params={"user_id": USER, "period": "2026-02", "large_family": str(large_family).lower()},
        headers=auth_headers(user_id=USER),
    )
    assert response.status_code == 200, response.json()
    bill = response.json()
    assert (bill["days"], bill["status"], bill["start"]) == (28, "closed", "2026-02-01T00:00:00+00:00")
    kwh = kwh_per_day * 28
    assert bill["energy_imported_kwh"] == pytest.approx(kwh, abs=1e-6)
    allowance = (300 if large_family else 200) * 28 / 30 if kva <= 6.9 else 0.0
    assert bill["reduced_vat_kwh"] == pytest.approx(min(kwh, allowance), abs=1e-3)
    # pyerse rounds each VAT-inclusive amount, the bill each line and each VAT total: a few cents apart.
    expected = pyerse_total(kva, Opcao_Horaria.SIMPLES, {"normal": kwh}, 28, large_family)
    assert bill["totals"]["after_taxes"] == pytest.approx(expected, abs=0.03)
    lines = {line["kind"]: line for line in bill["lines"] if line["kind"] != "vat"}
    assert lines["power"]["quantity"] == 28
    assert lines["power"]["amount"] == pytest.approx(round(28 * POWER_2026[kva], 2))
    assert lines["energy"]["unit_price"] == pytest.approx(SIMPLE_2026)
    # The energy lines are /energy-cost's energy cost of the same range, to the cent.
    assert bill["totals"]["energy"] == pytest.approx(energy_cost(client, auth_headers, start, end), abs=0.005)
    # Totals add the lines.
    assert sum(line["amount"] for line in bill["lines"]) == pytest.approx(
        bill["totals"]["amount_due"], abs=1e-9
    )


def test_a_31_day_bi_hourly_cycle_from_the_15th_spreads_the_allowance_pro_rata(  # type: ignore[no-untyped-def]
    client, context: ServiceContext, auth_headers: Headers
) -> None:
    start, end = dt.datetime(2026, 1, 15, tzinfo=dt.UTC), dt.datetime(2026, 2, 15, tzinfo=dt.UTC)
    load_household(context, "bi-hourly", 6.9, start, end, 12.0)
    response = client.get(
        "/api/statistics/bill",
        params={"user_id": USER, "period": "2026-01", "billing_day": 15},
        headers=auth_headers(service=True),
    )
    assert response.status_code == 200, response.json()
    bill = response.json()
    assert (bill["days"], bill["end"]) == (31, "2026-02-15T00:00:00+00:00")
    # Vazio is 22:00-08:00: 10 of every 24 hours at a constant consumption.
    kwh = {"vazio": 12.0 * 31 * 10 / 24, "fora_vazio": 12.0 * 31 * 14 / 24}
    energy = {line["description"]: line for line in bill["lines"] if line["kind"] == "energy"}
    assert energy["Energy, vazio period"]["quantity"] == pytest.approx(kwh["vazio"], abs=1e-3)
    assert energy["Energy, fora_vazio period"]["quantity"] == pytest.approx(kwh["fora_vazio"], abs=1e-3)
    expected = pyerse_total(6.9, Opcao_Horaria.BI_HORARIA, kwh, 31, False)
    assert bill["totals"]["after_taxes"] == pytest.approx(expected, abs=0.03)
    # Each of the two lines is rounded to the cent: together within a cent of /energy-cost.
    assert sum(line["amount"] for line in energy.values()) == bill["totals"]["energy"]
    assert bill["totals"]["energy"] == pytest.approx(
        energy_cost(client, auth_headers, start, end), abs=0.0101
    )


def test_an_open_period_is_billed_so_far_and_projected_from_recent_days(  # type: ignore[no-untyped-def]
    client, context: ServiceContext, auth_headers: Headers
) -> None:
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    load_household(context, "simple", 6.9, now - dt.timedelta(days=40), now - dt.timedelta(hours=2), 24.0)
    response = client.get(
        "/api/statistics/bill", params={"user_id": USER}, headers=auth_headers(user_id=USER)
    )
    assert response.status_code == 200, response.json()
    bill = response.json()
    assert bill["status"] == "open"
    projection = bill["projection"]
    assert projection["profile_days"] == 28
    assert "28" in projection["method"]
    # 1 kWh an hour, every day alike: the whole period at 24 kWh a day (DST days: 23 or 25 h), no spread.
    expected_kwh = projection["energy_imported_kwh"]["expected"]
    assert expected_kwh == pytest.approx(24.0 * bill["days"], abs=1.5)
    assert projection["energy_imported_kwh"]["low"] == pytest.approx(expected_kwh, abs=1e-3)
    assert projection["energy_imported_kwh"]["high"] == pytest.approx(expected_kwh, abs=1e-3)
    power = [line for line in projection["lines"] if line["kind"] == "power"]
    assert sum(line["quantity"] for line in power) == bill["days"]
    expected = pyerse_total(6.9, Opcao_Horaria.SIMPLES, {"normal": expected_kwh}, bill["days"], False)
    assert projection["after_taxes"]["expected"] == pytest.approx(expected, abs=0.03)
    assert bill["totals"]["after_taxes"] < projection["after_taxes"]["expected"]


def test_who_may_read_a_bill_and_bad_input(client, context: ServiceContext, auth_headers: Headers) -> None:  # type: ignore[no-untyped-def]
    start = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    load_household(context, "simple", 6.9, start, start + dt.timedelta(days=3), 5.0)
    url = "/api/statistics/bill"
    forbidden = client.get(url, params={"user_id": USER}, headers=auth_headers(user_id=OTHER))
    assert forbidden.status_code == 403
    missing = client.get(url, params={"user_id": "nobody0000"}, headers=auth_headers(service=True))
    assert missing.status_code == 404
    for query, name in (
        ({"period": "2026-13"}, "period"),
        ({"period": "2026-02", "billing_day": 29}, "billing_day"),
        ({"period": "2099-01"}, "period"),
        ({"period": "1999-12"}, "period"),
    ):
        bad = client.get(url, params={"user_id": USER, **query}, headers=auth_headers(service=True))
        assert bad.status_code == 400, query
        assert name in bad.json()["error"]


def get_bill(client, headers: Headers, **params: object) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The bill answer for `params` (user_id: USER unless given)."""
    query = {"user_id": USER, **{k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}}
    response = client.get("/api/statistics/bill", params=query, headers=headers(service=True))
    assert response.status_code == 200, response.json()
    bill: dict[str, Any] = response.json()
    return bill


def update_terms(context: ServiceContext, effective_from: str, **terms: object) -> None:
    """A later account event stating only billing terms."""
    event = account_message(USER, "UserUpdated", effective_from=effective_from, **terms)
    assert process(context, [event]) == []


def test_the_contracts_billing_day_15_bills_the_15th_to_the_14th(  # type: ignore[no-untyped-def]
    client, context: ServiceContext, auth_headers: Headers
) -> None:
    start, end = dt.datetime(2026, 1, 15, tzinfo=dt.UTC), dt.datetime(2026, 3, 15, tzinfo=dt.UTC)
    load_household(context, "bi-hourly", 6.9, start, end, 12.0, billing_day=15)
    january = get_bill(client, auth_headers, period="2026-01")
    assert (january["billing_day"], january["billing_day_source"]) == (15, "contract")
    assert (january["start"], january["end"], january["days"]) == (
        "2026-01-15T00:00:00+00:00",
        "2026-02-15T00:00:00+00:00",
        31,
    )
    assert (january["large_family"], january["large_family_source"], january["budget"]) == (
        False,
        "default",
        None,
    )
    kwh = {"vazio": 12.0 * 31 * 10 / 24, "fora_vazio": 12.0 * 31 * 14 / 24}
    assert january["energy_imported_kwh"] == pytest.approx(12.0 * 31, abs=1e-3)
    # 200 kWh per 30 days over 31 days: 206.7 kWh of the 372 at the reduced rate.
    assert january["reduced_vat_kwh"] == pytest.approx(200 * 31 / 30, abs=1e-3)
    expected = pyerse_total(6.9, Opcao_Horaria.BI_HORARIA, kwh, 31, False)
    assert january["totals"]["after_taxes"] == pytest.approx(expected, abs=0.03)
    # The next period starts where this one ends: 15 February to 14 March, 28 days.
    february = get_bill(client, auth_headers, period="2026-02")
    assert (february["start"], february["end"], february["days"]) == (
        january["end"],
        "2026-03-15T00:00:00+00:00",
        28,
    )


def test_a_large_family_in_the_contract_gets_300_kwh_at_the_reduced_rate_unless_the_query_says_otherwise(  # type: ignore[no-untyped-def]
    client, context: ServiceContext, auth_headers: Headers
) -> None:
    start, end = dt.datetime(2026, 2, 1, tzinfo=dt.UTC), dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    load_household(context, "simple", 6.9, start, end, 15.0, large_family=True)
    kwh = 15.0 * 28
    from_contract = get_bill(client, auth_headers, period="2026-02")
    assert (from_contract["large_family"], from_contract["large_family_source"]) == (True, "contract")
    assert (from_contract["billing_day"], from_contract["billing_day_source"]) == (1, "default")
    assert from_contract["reduced_vat_kwh"] == pytest.approx(300 * 28 / 30, abs=1e-3)
    expected = pyerse_total(6.9, Opcao_Horaria.SIMPLES, {"normal": kwh}, 28, True)
    assert from_contract["totals"]["after_taxes"] == pytest.approx(expected, abs=0.03)

    overridden = get_bill(client, auth_headers, period="2026-02", large_family=False)
    assert (overridden["large_family"], overridden["large_family_source"]) == (False, "request")
    assert overridden["reduced_vat_kwh"] == pytest.approx(200 * 28 / 30, abs=1e-3)
    expected = pyerse_total(6.9, Opcao_Horaria.SIMPLES, {"normal": kwh}, 28, False)
    assert overridden["totals"]["after_taxes"] == pytest.approx(expected, abs=0.03)
    assert overridden["totals"]["after_taxes"] > from_contract["totals"]["after_taxes"]


def test_the_querys_billing_day_wins_over_the_contracts(  # type: ignore[no-untyped-def]
    client, context: ServiceContext, auth_headers: Headers
) -> None:
    start, end = dt.datetime(2026, 1, 15, tzinfo=dt.UTC), dt.datetime(2026, 3, 15, tzinfo=dt.UTC)
    load_household(context, "simple", 6.9, start, end, 5.0, billing_day=15, bill_budget=50.0)
    bill = get_bill(client, auth_headers, period="2026-02", billing_day=1)
    assert (bill["billing_day"], bill["billing_day_source"]) == (1, "request")
    assert (bill["start"], bill["end"], bill["days"]) == (
        "2026-02-01T00:00:00+00:00",
        "2026-03-01T00:00:00+00:00",
        28,
    )
    assert bill["energy_imported_kwh"] == pytest.approx(5.0 * 28, abs=1e-3)
    # The budget is the contract's whatever the query says; a closed period has no projection.
    assert (bill["budget"], bill["status"], bill["projection"]) == (50.0, "closed", None)


def test_a_change_of_billing_day_gives_one_longer_period_and_no_gap(  # type: ignore[no-untyped-def]
    client, context: ServiceContext, auth_headers: Headers
) -> None:
    start, end = dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 4, 15, tzinfo=dt.UTC)
    load_household(context, "simple", 6.9, start, end, 10.0)
    # From 10 February on, billing periods start on the 15th: February's period still starts on the 1st.
    update_terms(context, "2026-02-10T00:00:00Z", billing_day=15)
    bills = [get_bill(client, auth_headers, period=f"2026-{m:02d}") for m in (1, 2, 3)]
    assert [(b["start"][:10], b["end"][:10], b["days"]) for b in bills] == [
        ("2026-01-01", "2026-02-01", 31),
        ("2026-02-01", "2026-03-15", 42),
        ("2026-03-15", "2026-04-15", 31),
    ]
    assert [(b["billing_day"], b["billing_day_source"]) for b in bills] == [
        (1, "default"),
        (1, "default"),
        (15, "contract"),
    ]
    transition = bills[1]
    # 420 kWh over 42 days: 280 kWh (200 per 30 days) at the reduced rate.
    assert transition["reduced_vat_kwh"] == pytest.approx(280.0, abs=1e-3)
    power = [line for line in transition["lines"] if line["kind"] == "power"]
    assert [line["quantity"] for line in power] == [42]
    expected = pyerse_total(6.9, Opcao_Horaria.SIMPLES, {"normal": 420.0}, 42, False)
    assert transition["totals"]["after_taxes"] == pytest.approx(expected, abs=0.03)


def test_the_terms_are_those_in_force_at_the_local_start_of_the_month(  # type: ignore[no-untyped-def]
    client, context: ServiceContext, auth_headers: Headers
) -> None:
    start, end = dt.datetime(2026, 4, 1, tzinfo=dt.UTC), dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
    load_household(context, "simple", 6.9, start, end, 5.0, billing_day=10)
    # Lisbon is on UTC+1 in summer: 1 May starts at 2026-04-30T23:00Z, 1 June at 2026-05-31T23:00Z.
    update_terms(context, "2026-04-30T23:00:00Z", billing_day=20, large_family=True)
    update_terms(context, "2026-05-31T23:00:01Z", billing_day=5, bill_budget=30.0)
    may, june = (get_bill(client, auth_headers, period=p) for p in ("2026-05", "2026-06"))
    # May's terms took effect at its first instant; June's one second after June began: next period.
    assert (may["billing_day"], may["large_family"], may["budget"]) == (20, True, None)
    assert (may["start"], may["end"]) == ("2026-05-20T00:00:00+01:00", "2026-06-20T00:00:00+01:00")
    assert (june["billing_day"], june["large_family"], june["budget"]) == (20, True, None)
    assert (june["start"], june["end"]) == ("2026-06-20T00:00:00+01:00", "2026-07-05T00:00:00+01:00")
    assert june["days"] == 15


def test_an_open_periods_projection_is_compared_with_the_budget(  # type: ignore[no-untyped-def]
    client, context: ServiceContext, auth_headers: Headers
) -> None:
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    load_household(context, "simple", 6.9, now - dt.timedelta(days=40), now - dt.timedelta(hours=2), 24.0)
    without = get_bill(client, auth_headers)
    assert (without["status"], without["budget"], without["projection"]["exceeds_budget"]) == (
        "open",
        None,
        None,
    )
    # The expected total as pyerse computes it for the whole period at 24 kWh a day.
    days = without["days"]
    expected = pyerse_total(6.9, Opcao_Horaria.SIMPLES, {"normal": 24.0 * days}, days, False)
    update_terms(context, "2021-01-01T00:00:00Z", bill_budget=round(expected - 2.0, 2))
    over = get_bill(client, auth_headers)
    assert over["budget"] == round(expected - 2.0, 2)
    assert over["projection"]["exceeds_budget"] is True
    update_terms(context, "2022-01-01T00:00:00Z", bill_budget=round(expected + 2.0, 2))
    under = get_bill(client, auth_headers)
    assert (under["budget"], under["projection"]["exceeds_budget"]) == (round(expected + 2.0, 2), False)
    # A null budget clears it.
    update_terms(context, "2023-01-01T00:00:00Z", bill_budget=None)
    cleared = get_bill(client, auth_headers)
    assert (cleared["budget"], cleared["projection"]["exceeds_budget"]) == (None, None)
