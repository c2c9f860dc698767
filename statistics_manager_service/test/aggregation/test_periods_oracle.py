"""Our vectorized ERSE periods against pyerse, an independent per-timestamp implementation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyerse.ciclos import Ciclo, Ciclo_Diario, Ciclo_Semanal
from pyerse.periodos_horarios import Periodos_Horarios

from statistics_manager_service.aggregation import load_tariff_book, price_buckets, tariff_periods
from statistics_manager_service.test.aggregation.factories import (
    households,
    no_carbon_intensity,
    no_energy_prices,
)

BOOK = load_tariff_book()
# pyerse splits vazio into vazio normal and super vazio (for higher voltages); households see one vazio.
TRI_HOURLY = {
    Periodos_Horarios.PONTA: "ponta",
    Periodos_Horarios.CHEIAS: "cheias",
    Periodos_Horarios.VAZIO_NORMAL: "vazio",
    Periodos_Horarios.SUPER_VAZIO: "vazio",
}
BI_HOURLY = {period: "vazio" if name == "vazio" else "fora_vazio" for period, name in TRI_HOURLY.items()}


def sweep_2026() -> pd.DatetimeIndex:
    """Return every quarter hour of 2026 (UTC) plus the minute before each, in Lisbon time."""
    quarters = pd.date_range("2026-01-01", "2027-01-01", freq="15min", tz="UTC", inclusive="left")
    both = pd.DatetimeIndex(quarters.append(quarters + pd.Timedelta(minutes=14))).sort_values()
    return both.tz_convert("Europe/Lisbon")


def oracle(cycle: type[Ciclo], local: pd.DatetimeIndex, names: dict[Periodos_Horarios, str]) -> list[str]:
    """Ask pyerse for the period at each local time, one timestamp at a time."""
    return [names[cycle.get_periodo_horario(moment)] for moment in local.to_pydatetime()]


@pytest.mark.parametrize(
    ("tariff", "schedule", "cycle", "names"),
    [
        ("tri-hourly", "pt-tri-hourly-daily", Ciclo_Diario, TRI_HOURLY),
        ("bi-hourly", "pt-bi-hourly-daily", Ciclo_Diario, BI_HOURLY),
    ],
)
def test_daily_cycle_matches_pyerse_for_a_year(
    tariff: str, schedule: str, cycle: type[Ciclo], names: dict[Periodos_Horarios, str]
) -> None:
    local = sweep_2026()
    expected = oracle(cycle, local, names)
    # Through the wall-clock API ...
    assert tariff_periods(local, BOOK.schedules[schedule]).tolist() == expected
    # ... and through the service path, from UTC instants and the household's zone.
    quarters = local[::2]
    buckets = pd.DataFrame(
        {
            "user_id": "u1",
            "bucket_start": quarters.tz_convert("UTC").as_unit("s").asi8,
            "energy_imported_kwh": 1.0,
            "energy_exported_kwh": 0.0,
            "self_consumed_kwh": 0.0,
        }
    )
    homes = households([("u1", "Europe/Lisbon", tariff, 6.9, "PT")])
    priced = price_buckets(buckets, homes, BOOK, no_energy_prices(), no_carbon_intensity())
    assert priced["tariff_period"].tolist() == expected[::2]
    assert np.unique(priced["tariff_period"]).size == len(set(names.values()))


@pytest.mark.parametrize(
    ("schedule", "names"), [("pt-tri-hourly-weekly", TRI_HOURLY), ("pt-bi-hourly-weekly", BI_HOURLY)]
)
def test_weekly_cycle_matches_pyerse_for_a_year(schedule: str, names: dict[Periodos_Horarios, str]) -> None:
    local = sweep_2026()
    assert tariff_periods(local, BOOK.schedules[schedule]).tolist() == oracle(Ciclo_Semanal, local, names)
