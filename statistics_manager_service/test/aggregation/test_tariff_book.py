"""Validation of the tariff YAML: every mistake fails with a ValueError naming the bad key."""

from __future__ import annotations

import datetime as dt
import importlib.resources
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from statistics_manager_service.aggregation import load_tariff_book

PACKAGED_TEXT = (
    importlib.resources.files("statistics_manager_service.aggregation").joinpath("tariffs.yaml").read_text()
)


def edited(change: Callable[[dict[str, Any]], None]) -> str:
    """Return the packaged YAML as text after an edit."""
    document = yaml.safe_load(PACKAGED_TEXT)
    change(document)
    return yaml.safe_dump(document)


def tri_winter(document: dict[str, Any]) -> dict[str, Any]:
    """Return the tri-hourly daily schedule's winter day."""
    periods: dict[str, Any] = document["schedules"]["pt-tri-hourly-daily"]["periods"]["winter"]["every-day"]
    return periods


CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("no currency", lambda d: d.pop("currency"), r"^currency:"),
    ("unknown top key", lambda d: d.update(prices={}), r"^prices: unknown key"),
    (
        "unknown schedule",
        lambda d: d["tariffs"]["simple"].update(schedule="nope"),
        r"^tariffs\.simple\.schedule: unknown schedule 'nope'",
    ),
    (
        "price missing a period",
        lambda d: d["tariffs"]["tri-hourly"]["energy_prices_eur_per_kwh"][0].pop("cheias"),
        r"^tariffs\.tri-hourly\.energy_prices_eur_per_kwh\[0\]: missing cheias",
    ),
    (
        "negative price",
        lambda d: d["tariffs"]["simple"]["energy_prices_eur_per_kwh"][0].update(normal=-1),
        r"^tariffs\.simple\.energy_prices_eur_per_kwh\[0\]\.normal:",
    ),
    (
        "bad date",
        lambda d: d["export_prices_eur_per_kwh"][0].update(valid_from="soon"),
        r"^export_prices_eur_per_kwh\[0\]\.valid_from:",
    ),
    (
        "same date twice",
        lambda d: d["export_prices_eur_per_kwh"].append({"valid_from": dt.date(2025, 1, 1), "price": 0.1}),
        r"^export_prices_eur_per_kwh: two entries share a valid_from",
    ),
    (
        "minute not covered",
        lambda d: tri_winter(d).update(vazio=["22:00-07:00"]),
        r"^schedules\.pt-tri-hourly-daily\.periods\.winter\.every-day: minute 07:00 is not covered",
    ),
    (
        "minute covered twice",
        lambda d: tri_winter(d).update(vazio=["21:00-08:00"]),
        r"every-day: minute 21:00 is covered twice",
    ),
    (
        "bad time range",
        lambda d: tri_winter(d).update(vazio=["22h-8h"]),
        r"^schedules\.pt-tri-hourly-daily\.periods\.winter\.every-day\.vazio: expected 'HH:MM-HH:MM'",
    ),
    (
        "bad season rule",
        lambda d: d["schedules"]["pt-tri-hourly-daily"]["seasons"]["summer"].update(until="late autumn"),
        r"^schedules\.pt-tri-hourly-daily\.seasons\.summer\.until:",
    ),
    (
        "season without periods",
        lambda d: d["schedules"]["pt-tri-hourly-daily"]["periods"].pop("summer"),
        r"^schedules\.pt-tri-hourly-daily\.periods: expected one entry per season",
    ),
    (
        "weekday covered twice",
        lambda d: d["schedules"]["pt-tri-hourly-weekly"]["periods"]["winter"].update(
            monday={"vazio": ["00:00-24:00"]}
        ),
        r"^schedules\.pt-tri-hourly-weekly\.periods\.winter: monday must be covered by exactly one",
    ),
    (
        "power levels differ",
        lambda d: d["power_charges_eur_per_day"][1]["by_kva"].pop(1.15),
        r"^power_charges_eur_per_day\[1\]\.by_kva: must list the same kVA levels",
    ),
    (
        "no default carbon intensity",
        lambda d: d["carbon_intensity_g_per_kwh"].pop("default"),
        r"^carbon_intensity_g_per_kwh\.default:",
    ),
    (
        "dynamic without fallback",
        lambda d: d["tariffs"]["dynamic"].pop("fallback_prices_eur_per_kwh"),
        r"^tariffs\.dynamic\.fallback_prices_eur_per_kwh:",
    ),
]


@pytest.mark.parametrize(("change", "message"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_invalid_books_name_the_bad_key(change: Callable[[dict[str, Any]], None], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_tariff_book(edited(change))


def test_not_yaml_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not valid YAML"):
        load_tariff_book("currency: [EUR\nschedules: {")


def test_override_file_path_is_read(tmp_path: Path) -> None:
    override = tmp_path / "tariffs.yaml"
    override.write_text(
        edited(lambda d: d["tariffs"]["simple"]["energy_prices_eur_per_kwh"][0].update(normal=0.3))
    )
    book = load_tariff_book(override)
    assert book.tariffs["simple"].energy_prices[0].prices["normal"] == 0.3
    assert load_tariff_book(str(override)).tariffs["simple"].energy_prices[0].prices["normal"] == 0.3
