"""Tariff book loading, period edges, prices over time, fixed charges and retroactive corrections."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.resources
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from pyerse import comercializador

from statistics_manager_service.aggregation import (
    book_fingerprint,
    first_changed_date,
    load_tariff_book,
    price_buckets,
    tariff_periods,
)
from statistics_manager_service.aggregation.tariff_book import taxes_in_force
from statistics_manager_service.aggregation.tariffs import TariffBook
from statistics_manager_service.test.aggregation.factories import (
    households,
    no_carbon_intensity,
    no_energy_prices,
    utc,
)

BOOK = load_tariff_book()
PACKAGED = yaml.safe_load(
    importlib.resources.files("statistics_manager_service.aggregation").joinpath("tariffs.yaml").read_text()
)


def book_with(change: Any) -> TariffBook:
    """Return a book loaded from the packaged YAML after `change(document)` edits it."""
    document = yaml.safe_load(yaml.safe_dump(PACKAGED))
    change(document)
    return load_tariff_book(yaml.safe_dump(document))


def buckets_at(instants: list[int], user_id: str = "u1", imported_kwh: float = 1.0) -> pd.DataFrame:
    """Return minimal bucket rows (1 kWh import, 0.5 kWh export, 0.2 kWh self-consumed)."""
    n = len(instants)
    return pd.DataFrame(
        {
            "user_id": [user_id] * n,
            "bucket_start": np.asarray(instants, dtype=np.int64),
            "energy_imported_kwh": [imported_kwh] * n,
            "energy_exported_kwh": [0.5] * n,
            "self_consumed_kwh": [0.2] * n,
        }
    )


def price(
    rows: pd.DataFrame, tariff: str, zone_tz: str = "Europe/Lisbon", kva: float | str = 6.9
) -> pd.DataFrame:
    """Price bucket rows for one household without grid series."""
    homes = households([(rows["user_id"].iloc[0], zone_tz, tariff, kva, "PT")])
    return price_buckets(rows, homes, BOOK, no_energy_prices(), no_carbon_intensity())


def periods_at(local_times: list[str], schedule: str) -> list[str]:
    """Return the period names at local wall-clock times."""
    return tariff_periods(pd.to_datetime(local_times), BOOK.schedules[schedule]).tolist()


def test_packaged_book_is_valid_and_complete() -> None:
    assert BOOK.currency == "EUR"
    assert set(BOOK.tariffs) == {
        "simple",
        "bi-hourly",
        "tri-hourly",
        "bi-hourly-weekly",
        "tri-hourly-weekly",
        "dynamic",
    }
    expected_levels = (1.15, 2.3, 3.45, 4.6, 5.75, 6.9, 10.35, 13.8, 17.25, 20.7, 27.6, 34.5, 41.4)
    assert BOOK.power_levels_kva == expected_levels
    assert {"PT", "ES", "FR", "DE", "default"} <= set(BOOK.carbon_intensity_g_per_kwh)
    assert book_fingerprint(load_tariff_book()) == book_fingerprint(BOOK)


def test_a_tariff_added_to_the_book_reprices_nothing_and_one_removed_everything() -> None:
    smaller = dataclasses.replace(
        BOOK, tariffs={name: spec for name, spec in BOOK.tariffs.items() if not name.endswith("-weekly")}
    )
    assert first_changed_date(smaller, BOOK) is None
    assert first_changed_date(BOOK, smaller) == dt.date.min


def test_the_books_taxes_are_those_pyerse_applies() -> None:
    rules = taxes_in_force(BOOK, dt.date(2026, 2, 1))
    assert rules is not None
    assert 1 + rules.vat_reduced_rate == pytest.approx(comercializador.IVA_REDUZIDA)
    assert 1 + rules.vat_normal_rate == pytest.approx(comercializador.IVA_NORMAL)
    assert rules.excise_eur_per_kwh == pytest.approx(comercializador.IMPOSTO_ESPECIAL_CONSUMO)
    assert rules.audiovisual_eur_per_month == pytest.approx(comercializador.CONTRIB_AUDIOVISUAL)
    assert rules.dgeg_eur_per_month == pytest.approx(comercializador.TAXA_DGEG)
    assert (rules.excise_vat, rules.audiovisual_vat, rules.dgeg_vat) == ("normal", "reduced", "normal")


def test_bi_hourly_edges() -> None:
    times = ["2026-01-15 21:59", "2026-01-15 22:00", "2026-01-16 07:59", "2026-01-16 08:00"]
    assert periods_at(times, "pt-bi-hourly-daily") == ["fora_vazio", "vazio", "vazio", "fora_vazio"]


WINTER_EDGES = {
    "08:00": "cheias", "08:59": "cheias", "09:00": "ponta", "10:29": "ponta", "10:30": "cheias",
    "17:59": "cheias", "18:00": "ponta", "20:29": "ponta", "20:30": "cheias", "21:59": "cheias",
    "22:00": "vazio",
}  # fmt: skip
SUMMER_EDGES = {
    "07:59": "vazio", "10:29": "cheias", "10:30": "ponta", "12:59": "ponta", "13:00": "cheias",
    "19:29": "cheias", "19:30": "ponta", "20:59": "ponta", "21:00": "cheias", "22:00": "vazio",
}  # fmt: skip


@pytest.mark.parametrize(("day", "edges"), [("2026-01-15", WINTER_EDGES), ("2026-07-15", SUMMER_EDGES)])
def test_tri_hourly_winter_and_summer_edges(day: str, edges: dict[str, str]) -> None:
    times = [f"{day} {time}" for time in edges]
    assert periods_at(times, "pt-tri-hourly-daily") == list(edges.values())


def test_winter_summer_switch_follows_the_last_sundays() -> None:
    # Saturday 2026-03-28 is winter (09:00 ponta); Sunday 2026-03-29 is summer (09:00 cheias).
    assert periods_at(["2026-03-28 09:00", "2026-03-29 09:00"], "pt-tri-hourly-daily") == ["ponta", "cheias"]
    # 10:30 is ponta in summer (Saturday 2026-10-24) and cheias in winter (Sunday 2026-10-25).
    assert periods_at(["2026-10-24 10:30", "2026-10-25 10:30"], "pt-tri-hourly-daily") == ["ponta", "cheias"]


def test_energy_cost_uses_the_period_price_in_local_time() -> None:
    # Summer: 21:45 and 22:00 Lisbon are 20:45Z and 21:00Z.
    out = price(buckets_at([utc("2026-07-15T20:45Z"), utc("2026-07-15T21:00Z")]), "bi-hourly")
    assert out["tariff_period"].tolist() == ["fora_vazio", "vazio"]
    assert out["energy_cost_eur"].tolist() == pytest.approx([0.2031, 0.1055])  # 1 kWh x 2026 prices
    assert out["export_revenue_eur"].tolist() == pytest.approx([0.5 * 0.045] * 2)
    net = out["energy_cost_eur"] + out["fixed_cost_eur"] - out["export_revenue_eur"]
    assert out["net_cost_eur"].to_numpy() == pytest.approx(net.to_numpy())


def test_price_change_applies_from_its_local_date() -> None:
    instants = [utc("2025-12-31T18:15Z"), utc("2025-12-31T18:30Z")]
    lisbon = price(buckets_at(instants), "simple")
    assert lisbon["energy_cost_eur"].tolist() == pytest.approx([0.1635, 0.1635])  # still 2025 in Lisbon
    kolkata = price(buckets_at(instants), "simple", zone_tz="Asia/Kolkata")
    assert kolkata["energy_cost_eur"].tolist() == pytest.approx([0.1635, 0.1651])  # 00:00 IST is 2026


@pytest.mark.parametrize(
    ("day_start", "day_end", "buckets_in_day"),
    [
        ("2026-03-29T00:00Z", "2026-03-29T23:00Z", 92),
        ("2026-10-24T23:00Z", "2026-10-26T00:00Z", 100),
        ("2026-06-10T23:00Z", "2026-06-11T23:00Z", 96),
    ],
)
def test_fixed_cost_adds_up_to_the_daily_charge(day_start: str, day_end: str, buckets_in_day: int) -> None:
    out = price(buckets_at(list(range(utc(day_start), utc(day_end), 900))), "tri-hourly", kva="6.9 kVA")
    assert len(out) == buckets_in_day
    assert out["fixed_cost_eur"].sum() == pytest.approx(0.3530, abs=1e-12)
    assert out["fixed_cost_eur"].nunique() == 1


def test_contracted_power_between_levels_pays_the_next_level_up() -> None:
    rows = buckets_at(list(range(utc("2026-06-10T23:00Z"), utc("2026-06-11T23:00Z"), 900)))
    assert price(rows, "simple", kva=5.0)["fixed_cost_eur"].sum() == pytest.approx(0.2967)  # 5.75 kVA
    assert price(rows, "simple", kva=41.4)["fixed_cost_eur"].sum() == pytest.approx(2.0392)
    with pytest.raises(ValueError, match="contracted_power_kva"):
        price(rows, "simple", kva=50.0)


def test_dynamic_prices_fall_back_in_a_hole() -> None:
    series = pd.DataFrame(
        {
            "zone": ["PT", "PT", "PT", "ES"],
            "direction": ["import", "import", "export", "import"],
            "ts": [utc("2026-05-01T10:00Z"), utc("2026-05-01T12:00Z"), utc("2026-05-01T10:00Z"), 0],
            "resolution_s": [3600, 3600, 7200, 10**9],
            "value": [0.20, 0.30, 0.07, 9.99],
        }
    )
    rows = buckets_at([utc("2026-05-01T10:45Z"), utc("2026-05-01T11:00Z"), utc("2026-05-01T12:15Z")])
    homes = households([("u1", "Europe/Lisbon", "dynamic", 3.45, "PT")])
    out = price_buckets(rows, homes, BOOK, series, no_carbon_intensity())
    # 11:00-12:00 is a hole in the import series -> fallback 0.15; export covers 10:00-12:00 only.
    assert out["energy_cost_eur"].tolist() == pytest.approx([0.20, 0.15, 0.30])
    assert out["export_revenue_eur"].tolist() == pytest.approx([0.5 * 0.07, 0.5 * 0.07, 0.5 * 0.045])


def test_carbon_intensity_prefers_actual_then_forecast_then_default() -> None:
    series = pd.DataFrame(
        {
            "zone": ["PT", "PT", "PT"],
            "kind": ["forecast", "actual", "forecast"],
            "ts": [utc("2026-05-01T10:00Z"), utc("2026-05-01T10:00Z"), utc("2026-05-01T11:00Z")],
            "resolution_s": [3600, 1800, 3600],
            "value": [100.0, 200.0, 300.0],
        }
    )
    rows = buckets_at([utc(f"2026-05-01T{time}Z") for time in ("10:15", "10:30", "11:00", "12:00")])
    homes = households([("u1", "Europe/Lisbon", "simple", 3.45, "PT")])
    out = price_buckets(rows, homes, BOOK, no_energy_prices(), series)
    # g/kWh: actual 200, forecast 100, forecast 300, PT default 140; 1 kWh import, 0.2 kWh self-consumed.
    assert out["co2_kg"].tolist() == pytest.approx([0.2, 0.1, 0.3, 0.14])
    assert out["co2_avoided_kg"].tolist() == pytest.approx([0.04, 0.02, 0.06, 0.028])
    elsewhere = price_buckets(rows, homes.assign(zone="XX"), BOOK, no_energy_prices(), series)
    assert elsewhere["co2_kg"].tolist() == pytest.approx([0.445] * 4)  # global default 445 g/kWh


def test_first_changed_date_finds_a_retroactive_correction() -> None:
    def correct_ponta(document: dict[str, Any]) -> None:
        document["tariffs"]["tri-hourly"]["energy_prices_eur_per_kwh"][1]["ponta"] = 0.2600

    corrected = book_with(correct_ponta)
    assert first_changed_date(BOOK, BOOK) is None
    assert first_changed_date(BOOK, corrected) == dt.date(2026, 1, 1)
    assert book_fingerprint(corrected) != book_fingerprint(BOOK)
    # Recomputing from that date is exactly enough: earlier buckets are unchanged, later ones move.
    instants = list(range(utc("2025-12-31T00:00Z"), utc("2026-01-02T00:00Z"), 900))
    homes = households([("u1", "Europe/Lisbon", "tri-hourly", 6.9, "PT")])
    before = price_buckets(buckets_at(instants), homes, BOOK, no_energy_prices(), no_carbon_intensity())
    after = price_buckets(buckets_at(instants), homes, corrected, no_energy_prices(), no_carbon_intensity())
    local_dates = (
        pd.to_datetime(before["bucket_start"], unit="s", utc=True).dt.tz_convert("Europe/Lisbon").dt.date
    )
    differs = before["energy_cost_eur"].to_numpy() != after["energy_cost_eur"].to_numpy()
    assert not differs[(local_dates < dt.date(2026, 1, 1)).to_numpy()].any()
    assert differs.any()


def test_first_changed_date_for_other_kinds_of_change() -> None:
    def new_entry(document: dict[str, Any]) -> None:
        entries = document["export_prices_eur_per_kwh"]
        entries.append({"valid_from": dt.date(2026, 6, 1), "price": 0.03})

    def power(document: dict[str, Any]) -> None:
        document["power_charges_eur_per_day"][1]["by_kva"][6.9] = 0.36

    def first_entry(document: dict[str, Any]) -> None:
        document["tariffs"]["simple"]["energy_prices_eur_per_kwh"][0]["normal"] = 0.17

    def co2_default(document: dict[str, Any]) -> None:
        document["carbon_intensity_g_per_kwh"]["PT"] = 150

    assert first_changed_date(BOOK, book_with(new_entry)) == dt.date(2026, 6, 1)
    assert first_changed_date(BOOK, book_with(power)) == dt.date(2026, 1, 1)
    assert first_changed_date(BOOK, book_with(first_entry)) == dt.date.min  # it also covers earlier days
    assert first_changed_date(BOOK, book_with(co2_default)) == dt.date.min


def test_fingerprint_ignores_layout_and_comments() -> None:
    reformatted = load_tariff_book("# a comment\n" + yaml.safe_dump(PACKAGED))
    assert book_fingerprint(reformatted) == book_fingerprint(BOOK)
