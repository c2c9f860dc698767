"""Cost and CO2 of 15-minute buckets, and what a tariff-book change means for history."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from statistics_manager_service.aggregation.arrays import (
    FloatArray,
    IntArray,
    ObjectArray,
    check_columns,
    factorize_labels,
    label_groups,
)
from statistics_manager_service.aggregation.co2 import carbon_intensity_g_per_kwh, co2_columns
from statistics_manager_service.aggregation.contracts import BEGINNING_S, Calendars, contracts_at
from statistics_manager_service.aggregation.granularity import BUCKET_SECONDS
from statistics_manager_service.aggregation.schedules import period_codes, tariff_periods
from statistics_manager_service.aggregation.steps import step_values
from statistics_manager_service.aggregation.tariff_book import (
    PriceEntry,
    TariffBook,
    TariffSpec,
    entry_index,
    in_force_on,
    load_tariff_book,
    power_charge_matrix,
    price_matrix,
)

__all__ = [
    "PRICE_COLUMNS",
    "TariffBook",
    "book_fingerprint",
    "daily_power_charge_eur",
    "first_changed_date",
    "load_tariff_book",
    "power_level_at_or_above",
    "price_buckets",
    "price_buckets_under",
    "tariff_periods",
]

PRICE_COLUMNS = (
    "tariff_period",
    "energy_cost_eur",
    "fixed_cost_eur",
    "export_revenue_eur",
    "net_cost_eur",
    "co2_kg",
    "co2_avoided_kg",
)
_HOUSEHOLD_COLUMNS = ("user_id", "timezone", "tariff_type", "contracted_power_kva", "zone")


def contracted_kva(column: pd.Series) -> FloatArray:
    """Return contracted power in kVA from numbers or account-manager text such as '6.9 kVA'."""
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    number = column.astype(str).str.extract(r"(\d+(?:[.,]\d+)?)", expand=False).str.replace(",", ".")
    return pd.to_numeric(number, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _contracts_for(
    users: ObjectArray, codes: IntArray, starts_s: IntArray, households: pd.DataFrame
) -> pd.DataFrame:
    """Return each bucket's contract: its household's version in force at the bucket's start."""
    absent = users[~pd.Index(users, dtype=object).isin(households["user_id"])]
    if absent.size:
        raise ValueError(f"households: no household for user(s) {', '.join(map(str, absent[:5]))}")
    return contracts_at(households, users[codes], starts_s)


def _as_versions(households: pd.DataFrame) -> pd.DataFrame:
    """Contract versions as the engine prices them: a frame of one row per household (without
    `effective_s`) is each household's contract from the beginning."""
    check_columns(households, _HOUSEHOLD_COLUMNS, "households")
    if "effective_s" in households.columns:
        return households
    if not households["user_id"].is_unique:
        raise ValueError("households: more than one row for a user_id")
    return households.assign(effective_s=BEGINNING_S)


def power_level_at_or_above(book: TariffBook, kva: FloatArray) -> IntArray:
    """Return the index in the book's ladder of standard powers of the smallest level at or above
    each power (tolerating float noise); the ladder's length for a power above it. A contracted
    power between two levels pays the next level up."""
    levels = np.asarray(book.power_levels_kva)
    found: IntArray = np.searchsorted(levels, np.asarray(kva, dtype=np.float64) - 1e-9, side="left")
    return found


def daily_power_charge_eur(
    book: TariffBook, kva: FloatArray, users: ObjectArray, days: IntArray
) -> FloatArray:
    """Return the power charge (EUR/day) of each contracted power on each local day."""
    level = power_level_at_or_above(book, kva)
    bad = np.isnan(kva) | (level >= len(book.power_levels_kva))
    if bad.any():
        names = ", ".join(map(str, pd.unique(users[bad])[:5]))
        raise ValueError(f"households.contracted_power_kva: no power charge for user(s) {names}")
    charges: FloatArray = power_charge_matrix(book)[entry_index(book.power_charges, days), level]
    return charges


def _fixed_cost_eur(
    book: TariffBook, kva: FloatArray, users: ObjectArray, days: IntArray, day_length_s: IntArray
) -> FloatArray:
    """Spread each local day's power charge evenly over that day's 15-minute buckets."""
    daily_eur = daily_power_charge_eur(book, kva, users, days)
    # 92, 96 or 100 buckets: DST days (and time-zone transition days) are shorter or longer.
    return daily_eur * BUCKET_SECONDS / day_length_s


def _series_prices(
    spec: TariffSpec, zones: ObjectArray, starts_s: IntArray, days: IntArray, energy_prices: pd.DataFrame
) -> tuple[FloatArray, FloatArray]:
    """Return import and export prices from the EnergyPrices series, with dated fallbacks in holes."""
    prices = []
    for direction in ("import", "export"):
        found = np.full(starts_s.size, np.nan)
        if not energy_prices.empty:
            rows = energy_prices[energy_prices["direction"].to_numpy(dtype=object) == direction]
            found = step_values(rows["zone"].to_numpy(dtype=object), rows, zones, starts_s)
        fallback = price_matrix(spec.fallback_prices, (direction,))[
            entry_index(spec.fallback_prices, days), 0
        ]
        prices.append(np.where(np.isnan(found), fallback, found))
    return prices[0], prices[1]


def price_buckets(
    buckets: pd.DataFrame,
    households: pd.DataFrame,
    book: TariffBook,
    energy_prices: pd.DataFrame,
    carbon_intensity: pd.DataFrame,
    calendars: Calendars | None = None,
) -> pd.DataFrame:
    """Return the buckets with their tariff period, cost, revenue and CO2 columns added.

    Each bucket is priced with the contract in force at its start (`households` may hold dated
    versions, see `_as_versions`), on the clock of its household's calendar (by default, the one
    its versions give).
    """
    (priced,) = price_buckets_under(buckets, [households], book, energy_prices, carbon_intensity, calendars)
    return priced


def price_buckets_under(
    buckets: pd.DataFrame,
    contract_variants: Sequence[pd.DataFrame],
    book: TariffBook,
    energy_prices: pd.DataFrame,
    carbon_intensity: pd.DataFrame,
    calendars: Calendars | None = None,
) -> list[pd.DataFrame]:
    """Price the same buckets under each of several contract histories, as `price_buckets` would
    one by one.

    The variants may differ in tariff and contracted power, not in zone or time zone: the local
    clock of the buckets and their carbon intensity are worked out once, from the first variant.
    """
    if buckets.empty:
        empty = {
            name: pd.Series(dtype=object if name == "tariff_period" else np.float64) for name in PRICE_COLUMNS
        }
        return [buckets.assign(**empty) for _ in contract_variants]
    codes, users = factorize_labels(buckets["user_id"])
    starts_s = buckets["bucket_start"].to_numpy(dtype=np.int64)
    bucket_users = users[codes]
    contract_variants = [_as_versions(households) for households in contract_variants]
    first = contract_variants[0]
    if calendars is None:
        calendars = Calendars.of_contracts(first[first["user_id"].isin(users)])
    days, minutes = calendars.local_days_and_minutes(bucket_users, starts_s)
    day_length_s = calendars.day_starts(bucket_users, days + 1) - calendars.day_starts(bucket_users, days)
    imported_kwh = buckets["energy_imported_kwh"].to_numpy(dtype=np.float64, na_value=np.nan)
    exported_kwh = buckets["energy_exported_kwh"].to_numpy(dtype=np.float64, na_value=np.nan)
    self_consumed_kwh = buckets["self_consumed_kwh"].to_numpy(dtype=np.float64, na_value=np.nan)
    first_contracts = _contracts_for(users, codes, starts_s, first)
    grid_zones = first_contracts["zone"].to_numpy(dtype=object)
    intensity = carbon_intensity_g_per_kwh(
        grid_zones, starts_s, carbon_intensity, book.carbon_intensity_g_per_kwh
    )
    co2 = co2_columns(imported_kwh, self_consumed_kwh, intensity)
    priced = []
    for households in contract_variants:
        contracts = (
            first_contracts if households is first else _contracts_for(users, codes, starts_s, households)
        )
        labels, import_price, export_price = _energy_prices(
            book,
            contracts["tariff_type"].to_numpy(dtype=object),
            grid_zones,
            starts_s,
            days,
            minutes,
            energy_prices,
        )
        kva = contracted_kva(contracts["contracted_power_kva"])
        fixed_cost_eur = _fixed_cost_eur(book, kva, bucket_users, days, day_length_s)
        energy_cost_eur = imported_kwh * import_price
        export_revenue_eur = exported_kwh * export_price
        priced.append(
            buckets.assign(
                tariff_period=labels,
                energy_cost_eur=energy_cost_eur,
                fixed_cost_eur=fixed_cost_eur,
                export_revenue_eur=export_revenue_eur,
                net_cost_eur=energy_cost_eur + fixed_cost_eur - export_revenue_eur,
                **co2,
            )
        )
    return priced


def _energy_prices(
    book: TariffBook,
    tariff_types: ObjectArray,
    grid_zones: ObjectArray,
    starts_s: IntArray,
    days: IntArray,
    minutes: IntArray,
    energy_prices: pd.DataFrame,
) -> tuple[ObjectArray, FloatArray, FloatArray]:
    """Each bucket's tariff period and its import and export prices under its tariff."""
    n = starts_s.size
    labels = np.empty(n, dtype=object)
    import_price = np.full(n, np.nan)
    export_price = np.full(n, np.nan)
    export_matrix = price_matrix(book.export_prices, ("price",))
    for tariff_name, positions in label_groups(tariff_types, "tariff_type"):
        spec = book.tariffs.get(tariff_name)
        if spec is None:
            raise ValueError(f"households.tariff_type: unknown tariff {tariff_name!r}")
        schedule = book.schedules[spec.schedule]
        local_days = days[positions]
        period = period_codes(local_days, minutes[positions], schedule)
        labels[positions] = np.asarray(schedule.period_names, dtype=object)[period]
        if spec.priced_by_series:
            import_price[positions], export_price[positions] = _series_prices(
                spec, grid_zones[positions], starts_s[positions], local_days, energy_prices
            )
        else:
            matrix = price_matrix(spec.energy_prices, schedule.period_names)
            import_price[positions] = matrix[entry_index(spec.energy_prices, local_days), period]
            export_price[positions] = export_matrix[entry_index(book.export_prices, local_days), 0]
    return labels, import_price, export_price


def _in_force(entries: Sequence[PriceEntry], day: dt.date) -> dict[str, float]:
    """Return the prices in force on a day (the earliest entry also covers earlier days)."""
    return dict(in_force_on(entries, day).prices)


def _first_difference(old: Sequence[PriceEntry], new: Sequence[PriceEntry]) -> dt.date | None:
    """Return the earliest day on which two dated price lists give different prices."""
    breakpoints = sorted({entry.valid_from for entry in (*old, *new)})
    for day in (dt.date.min, *breakpoints):
        if _in_force(old, day) != _in_force(new, day):
            return day
    return None


def first_changed_date(old_book: TariffBook, new_book: TariffBook) -> dt.date | None:
    """Return the earliest local date whose prices differ between two books (None: identical).

    `date.min` means all history: an undated part changed (a schedule, a CO2 default, the
    currency, a tariff removed) or the earliest entry, which also covers earlier days. A tariff
    added changes nothing priced before; taxes are not part of the stored statistics.
    """
    if (old_book.currency, dict(old_book.carbon_intensity_g_per_kwh)) != (
        new_book.currency,
        dict(new_book.carbon_intensity_g_per_kwh),
    ):
        return dt.date.min
    changed: list[dt.date | None] = [
        _first_difference(old_book.export_prices, new_book.export_prices),
        _first_difference(old_book.power_charges, new_book.power_charges),
    ]
    for name in sorted(set(old_book.tariffs) | set(new_book.tariffs)):
        old, new = old_book.tariffs.get(name), new_book.tariffs.get(name)
        if old is None and new is not None:
            continue  # no household had it (pricing refuses an unknown tariff): nothing to reprice
        if old is None or new is None or old.priced_by_series != new.priced_by_series:
            return dt.date.min
        if old_book.schedules[old.schedule].digest != new_book.schedules[new.schedule].digest:
            return dt.date.min
        if old.priced_by_series:
            changed.append(_first_difference(old.fallback_prices, new.fallback_prices))
        else:
            changed.append(_first_difference(old.energy_prices, new.energy_prices))
    dates = [day for day in changed if day is not None]
    return min(dates) if dates else None


def _entries_json(entries: Sequence[PriceEntry]) -> list[object]:
    """Return dated entries as plain, ordered JSON values."""
    return [[entry.valid_from.isoformat(), sorted(entry.prices.items())] for entry in entries]


def book_fingerprint(book: TariffBook) -> str:
    """Return a hash of everything in the book that affects prices or CO2 (not comments or layout)."""
    content = {
        "currency": book.currency,
        "carbon": sorted(book.carbon_intensity_g_per_kwh.items()),
        "export": _entries_json(book.export_prices),
        "power": _entries_json(book.power_charges),
        "tariffs": {
            name: {
                "schedule": book.schedules[spec.schedule].digest,
                "periods": list(book.schedules[spec.schedule].period_names),
                "series": spec.priced_by_series,
                "energy": _entries_json(spec.energy_prices),
                "fallback": _entries_json(spec.fallback_prices),
            }
            for name, spec in sorted(book.tariffs.items())
        },
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
