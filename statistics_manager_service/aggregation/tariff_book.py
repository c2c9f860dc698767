"""The tariff book: tariffs, schedules, power charges and CO2 defaults, loaded from YAML and validated."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.resources
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import yaml

from statistics_manager_service.aggregation.arrays import FloatArray, IntArray
from statistics_manager_service.aggregation.localtime import day_number
from statistics_manager_service.aggregation.schedules import Schedule, parse_schedule

DEFAULT_ZONE_KEY = "default"


@dataclass(frozen=True)
class PriceEntry:
    """Prices (EUR/kWh, or EUR/day for power) that apply from a local date on."""

    valid_from: dt.date
    prices: Mapping[str, float]


@dataclass(frozen=True)
class TariffSpec:
    """One tariff type: its schedule and either dated period prices or a price series."""

    name: str
    schedule: str
    priced_by_series: bool  # True for dynamic tariffs (EnergyPrices import/export series)
    energy_prices: tuple[PriceEntry, ...]  # period -> EUR/kWh, sorted by valid_from
    fallback_prices: tuple[PriceEntry, ...]  # "import"/"export" -> EUR/kWh, for series holes


@dataclass(frozen=True)
class TariffBook:
    """Everything needed to price buckets, as validated, immutable data."""

    currency: str
    schedules: Mapping[str, Schedule]
    tariffs: Mapping[str, TariffSpec]
    export_prices: tuple[PriceEntry, ...]  # "price" -> EUR/kWh
    power_charges: tuple[PriceEntry, ...]  # contracted kVA (as text) -> EUR/day
    power_levels_kva: tuple[float, ...]  # ascending, the same in every power-charge entry
    carbon_intensity_g_per_kwh: Mapping[str, float]  # zone -> g/kWh, with a "default" entry
    taxes: tuple[TaxRules, ...] = ()  # sorted by valid_from; empty: the book prices no bill


# The VAT rate each fee bears, by name.
VAT_KINDS = ("reduced", "normal")


@dataclass(frozen=True)
class TaxRules:
    """The taxes and fees a bill adds, from a local date on (see the tariff book's `taxes`)."""

    valid_from: dt.date
    vat_normal_rate: float
    vat_reduced_rate: float
    reduced_vat_kwh_per_30_days: float
    reduced_vat_kwh_per_30_days_large_family: float
    reduced_vat_energy_max_kva: float
    reduced_vat_power_max_kva: float
    excise_eur_per_kwh: float
    excise_vat: str
    audiovisual_eur_per_month: float
    audiovisual_vat: str
    dgeg_eur_per_month: float
    dgeg_vat: str

    def vat_rate(self, kind: str) -> float:
        """Return the rate of a VAT kind (`reduced` or `normal`)."""
        return self.vat_reduced_rate if kind == "reduced" else self.vat_normal_rate


class Dated(Protocol):
    """An entry of the book valid from a local date on."""

    @property
    def valid_from(self) -> dt.date: ...


DatedT = TypeVar("DatedT", bound=Dated)


def in_force_on(entries: Sequence[DatedT], day: dt.date) -> DatedT:
    """Return the entry in force on a local day, of entries sorted by `valid_from` (the earliest
    also covers earlier days)."""
    current = entries[0]
    for entry in entries:  # a handful of dated entries, not data rows
        if entry.valid_from <= day:
            current = entry
    return current


def taxes_in_force(book: TariffBook, day: dt.date) -> TaxRules | None:
    """Return the tax rules in force on a local day (None: the book prices no bill)."""
    return in_force_on(book.taxes, day) if book.taxes else None


def entry_days(entries: Sequence[PriceEntry]) -> IntArray:
    """Return each entry's valid_from as days since 1970-01-01."""
    return np.array([day_number(entry.valid_from) for entry in entries], dtype=np.int64)


def entry_index(entries: Sequence[PriceEntry], days: IntArray) -> IntArray:
    """Return the entry in force on each local day (the earliest entry covers earlier days)."""
    return np.maximum(np.searchsorted(entry_days(entries), days, side="right") - 1, 0).astype(np.int64)


def price_matrix(entries: Sequence[PriceEntry], keys: Sequence[str]) -> FloatArray:
    """Return prices as an [entry, key] matrix for vectorized lookup."""
    return np.array([[entry.prices[key] for key in keys] for entry in entries], dtype=np.float64)


def power_charge_matrix(book: TariffBook) -> FloatArray:
    """Return daily power charges as an [entry, kVA level] matrix."""
    return price_matrix(book.power_charges, [_kva_key(kva) for kva in book.power_levels_kva])


def load_tariff_book(path_or_text: str | os.PathLike[str] | None = None) -> TariffBook:
    """Load and validate a tariff book from a YAML file path or YAML text (None: the packaged one).

    A str containing a line break is read as YAML text; any other str or path-like is a file path.
    """
    if path_or_text is None:
        text = (importlib.resources.files(__package__) / "tariffs.yaml").read_text(encoding="utf-8")
    elif isinstance(path_or_text, str) and "\n" in path_or_text:
        text = path_or_text
    else:
        text = Path(path_or_text).read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"tariffs: not valid YAML ({error})") from error
    return parse_tariff_book(raw)


def parse_tariff_book(raw: Any) -> TariffBook:
    """Validate a parsed YAML document and build the book."""
    root = _mapping(raw, "tariffs file")
    known = {"version", "currency", "schedules", "tariffs", "export_prices_eur_per_kwh",
             "power_charges_eur_per_day", "carbon_intensity_g_per_kwh", "taxes"}  # fmt: skip
    unknown = sorted(set(map(str, root)) - known)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown key")
    if root.get("version", 1) != 1:
        raise ValueError("version: only version 1 is supported")
    currency = root.get("currency")
    if not isinstance(currency, str) or len(currency) != 3:
        raise ValueError("currency: expected a 3-letter currency code")
    schedules = {
        str(name): parse_schedule(str(name), spec, f"schedules.{name}")
        for name, spec in _mapping(root.get("schedules"), "schedules").items()
    }
    tariffs = {
        str(name): _parse_tariff(str(name), spec, schedules)
        for name, spec in _mapping(root.get("tariffs"), "tariffs").items()
    }
    export_prices = _parse_entries(
        root.get("export_prices_eur_per_kwh"), "export_prices_eur_per_kwh", ("price",)
    )
    power_charges, levels = _parse_power_charges(root.get("power_charges_eur_per_day"))
    carbon = {
        str(zone): _number(value, f"carbon_intensity_g_per_kwh.{zone}")
        for zone, value in _mapping(
            root.get("carbon_intensity_g_per_kwh"), "carbon_intensity_g_per_kwh"
        ).items()
    }
    if DEFAULT_ZONE_KEY not in carbon:
        raise ValueError("carbon_intensity_g_per_kwh.default: missing (used for zones not listed)")
    taxes = _parse_taxes(root["taxes"]) if "taxes" in root else ()
    return TariffBook(currency, schedules, tariffs, export_prices, power_charges, levels, carbon, taxes)


def _parse_taxes(raw: Any) -> tuple[TaxRules, ...]:
    """Validate the dated tax entries: every field of TaxRules, rates below 1, VAT kinds named."""
    path = "taxes"
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{path}: expected a non-empty list of entries with valid_from")
    names = [field.name for field in dataclasses.fields(TaxRules)]
    entries = []
    for index, item in enumerate(raw):
        entry_path = f"{path}[{index}]"
        item = _mapping(item, entry_path)
        given = set(map(str, item))
        if given != set(names):
            missing, extra = sorted(set(names) - given), sorted(given - set(names))
            problem = f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}"
            raise ValueError(f"{entry_path}: {problem}")
        values: dict[str, Any] = {"valid_from": _date(item["valid_from"], f"{entry_path}.valid_from")}
        for name in names[1:]:
            if name.endswith("_vat"):
                if item[name] not in VAT_KINDS:
                    raise ValueError(f"{entry_path}.{name}: expected one of {', '.join(VAT_KINDS)}")
                values[name] = item[name]
                continue
            values[name] = _number(item[name], f"{entry_path}.{name}")
            if name.endswith("_rate") and values[name] >= 1:
                raise ValueError(f"{entry_path}.{name}: a rate is a fraction (0.23 for 23%)")
        entries.append(TaxRules(**values))
    entries.sort(key=lambda entry: entry.valid_from)
    dates = [entry.valid_from for entry in entries]
    if len(set(dates)) != len(dates):
        raise ValueError(f"{path}: two entries share a valid_from date")
    return tuple(entries)


def _parse_tariff(name: str, raw: Any, schedules: Mapping[str, Schedule]) -> TariffSpec:
    """Validate one tariff entry against the schedules it names."""
    path = f"tariffs.{name}"
    spec = _mapping(raw, path)
    schedule_name = str(spec.get("schedule"))
    if schedule_name not in schedules:
        raise ValueError(f"{path}.schedule: unknown schedule {schedule_name!r}")
    priced_by = spec.get("priced_by", "schedule")
    if priced_by not in ("schedule", "energy-prices"):
        raise ValueError(f"{path}.priced_by: expected 'schedule' or 'energy-prices'")
    if priced_by == "energy-prices":
        allowed = {"schedule", "priced_by", "fallback_prices_eur_per_kwh"}
        fallback = _parse_entries(
            spec.get("fallback_prices_eur_per_kwh"),
            f"{path}.fallback_prices_eur_per_kwh",
            ("import", "export"),
        )
        energy: tuple[PriceEntry, ...] = ()
    else:
        allowed = {"schedule", "priced_by", "energy_prices_eur_per_kwh"}
        periods = schedules[schedule_name].period_names
        energy = _parse_entries(
            spec.get("energy_prices_eur_per_kwh"), f"{path}.energy_prices_eur_per_kwh", periods
        )
        fallback = ()
    unknown = sorted(set(map(str, spec)) - allowed)
    if unknown:
        raise ValueError(f"{path}.{unknown[0]}: unknown key for this kind of tariff")
    return TariffSpec(name, schedule_name, priced_by == "energy-prices", energy, fallback)


def _parse_entries(raw: Any, path: str, keys: Sequence[str]) -> tuple[PriceEntry, ...]:
    """Validate a dated price list whose entries each give exactly `keys`."""
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{path}: expected a non-empty list of entries with valid_from")
    entries = []
    for index, item in enumerate(raw):
        entry_path = f"{path}[{index}]"
        item = _mapping(item, entry_path)
        given = set(map(str, item)) - {"valid_from"}
        if given != set(keys):
            missing, extra = sorted(set(keys) - given), sorted(given - set(keys))
            problem = f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}"
            raise ValueError(f"{entry_path}: {problem} (expected {', '.join(keys)})")
        prices = {key: _number(item[key], f"{entry_path}.{key}") for key in keys}
        entries.append(PriceEntry(_date(item.get("valid_from"), f"{entry_path}.valid_from"), prices))
    return _sorted_unique(entries, path)


def _parse_power_charges(raw: Any) -> tuple[tuple[PriceEntry, ...], tuple[float, ...]]:
    """Validate the dated power-charge tables; all must list the same kVA levels."""
    path = "power_charges_eur_per_day"
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{path}: expected a non-empty list of entries with valid_from and by_kva")
    entries, levels = [], None
    for index, item in enumerate(raw):
        entry_path = f"{path}[{index}]"
        item = _mapping(item, entry_path)
        if set(map(str, item)) != {"valid_from", "by_kva"}:
            raise ValueError(f"{entry_path}: expected exactly the keys valid_from and by_kva")
        table = {
            _number(kva, f"{entry_path}.by_kva"): _number(charge, f"{entry_path}.by_kva.{kva}")
            for kva, charge in _mapping(item["by_kva"], f"{entry_path}.by_kva").items()
        }
        these = tuple(sorted(table))
        if levels is not None and these != levels:
            raise ValueError(f"{entry_path}.by_kva: must list the same kVA levels as {path}[0]")
        levels = these
        prices = {_kva_key(kva): table[kva] for kva in these}
        entries.append(PriceEntry(_date(item["valid_from"], f"{entry_path}.valid_from"), prices))
    assert levels is not None
    return _sorted_unique(entries, path), levels


def _kva_key(kva: float) -> str:
    """Return a stable text key for a kVA level."""
    return f"{kva:g}"


def _sorted_unique(entries: list[PriceEntry], path: str) -> tuple[PriceEntry, ...]:
    """Sort entries by date, rejecting two entries for the same date."""
    entries.sort(key=lambda entry: entry.valid_from)
    dates = [entry.valid_from for entry in entries]
    if len(set(dates)) != len(dates):
        raise ValueError(f"{path}: two entries share a valid_from date")
    return tuple(entries)


def _mapping(raw: Any, path: str) -> Mapping[Any, Any]:
    """Return raw as a non-empty mapping or fail naming the key."""
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError(f"{path}: expected a non-empty mapping")
    return raw


def _number(raw: Any, path: str) -> float:
    """Return a finite, non-negative number or fail naming the key."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not np.isfinite(raw) or raw < 0:
        raise ValueError(f"{path}: expected a non-negative number, got {raw!r}")
    return float(raw)


def _date(raw: Any, path: str) -> dt.date:
    """Return a date from a YAML date or an ISO date string."""
    if isinstance(raw, dt.datetime):
        raise ValueError(f"{path}: expected a date (YYYY-MM-DD), not a date-time")
    if isinstance(raw, dt.date):
        return raw
    try:
        return dt.date.fromisoformat(str(raw))
    except ValueError as error:
        raise ValueError(f"{path}: expected a date (YYYY-MM-DD), got {raw!r}") from error
