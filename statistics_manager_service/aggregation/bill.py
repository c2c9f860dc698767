"""The bill of a billing period: priced 15-minute buckets and the tariff book's taxes -> line items.

Amounts on a bill are cents: each line is rounded, and totals add the rounded lines, as a printed
bill does. VAT is computed per rate on the sum of the (rounded) amounts it applies to.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from statistics_manager_service.aggregation.arrays import IntArray, check_columns
from statistics_manager_service.aggregation.contracts import Calendars, contracts_at
from statistics_manager_service.aggregation.granularity import BUCKET_SECONDS, SECONDS_PER_DAY
from statistics_manager_service.aggregation.tariff_book import TariffBook, TaxRules
from statistics_manager_service.aggregation.tariffs import contracted_kva, daily_power_charge_eur

# What the bill needs of each priced 15-minute bucket (as price_buckets returns them).
BILL_BUCKET_COLUMNS = (
    "bucket_start",
    "tariff_period",
    "energy_imported_kwh",
    "energy_cost_eur",
    "energy_exported_kwh",
    "export_revenue_eur",
)
ENERGY_COLUMNS = ("tariff_period", "energy_imported_kwh", "energy_cost_eur")
DAYS_PER_VAT_ALLOWANCE = 30
# A 90% interval of a normal distribution.
RANGE_Z = 1.645
PROFILE_DAYS = 28


def cents(amount: float) -> float:
    """Round an amount to the cent (and turn -0.0 into 0.0)."""
    return round(amount, 2) + 0.0


@dataclasses.dataclass(frozen=True)
class PowerTerm:
    """Days of one contracted power at one daily price."""

    contracted_power_kva: float
    days: int
    eur_per_day: float


@dataclasses.dataclass(frozen=True)
class BillInputs:
    """What a bill prices: energy per tariff period, power terms, exports and the VAT context."""

    energy: pd.DataFrame  # ENERGY_COLUMNS, one row per tariff period
    power_terms: tuple[PowerTerm, ...]
    exported_kwh: float
    export_revenue_eur: float
    period_days: float  # the days the reduced-VAT allowance is prorated over
    contracted_power_kva: float  # the power that decides whether energy gets the reduced rate
    large_family: bool


@dataclasses.dataclass(frozen=True)
class BillLine:
    """One line of a bill."""

    kind: str  # energy, power, excise, audiovisual, dgeg, vat, export
    description: str
    quantity: float
    unit: str
    unit_price: float
    amount_eur: float


@dataclasses.dataclass(frozen=True)
class Bill:
    """A bill's lines and totals (EUR, to the cent)."""

    lines: tuple[BillLine, ...]
    energy_eur: float
    power_eur: float
    before_taxes_eur: float
    taxes_eur: float
    after_taxes_eur: float
    export_revenue_eur: float
    amount_due_eur: float
    reduced_vat_kwh: float


def energy_by_period(buckets: pd.DataFrame) -> pd.DataFrame:
    """Sum imported energy and its cost per tariff period (ENERGY_COLUMNS, by period name)."""
    check_columns(buckets, BILL_BUCKET_COLUMNS, "buckets")
    if buckets.empty:
        return pd.DataFrame(
            {name: pd.Series(dtype=object if name == "tariff_period" else float) for name in ENERGY_COLUMNS}
        )
    sums = buckets.groupby("tariff_period", sort=True)[["energy_imported_kwh", "energy_cost_eur"]].sum(
        min_count=0
    )
    return sums.reset_index()[list(ENERGY_COLUMNS)]


def power_terms(
    book: TariffBook, contracts: pd.DataFrame, calendars: Calendars, user_id: str, days: IntArray
) -> tuple[PowerTerm, ...]:
    """The power terms of a household's local days (days since 1970-01-01): each day pays the daily
    charge of the contracted power in force at its start, as the statistics spread it."""
    if days.size == 0:
        return ()
    users = np.full(days.size, user_id, dtype=object)
    starts = calendars.day_starts(users, days)
    kva = contracted_kva(contracts_at(contracts, users, starts)["contracted_power_kva"])
    charge = daily_power_charge_eur(book, kva, users, days)
    frame = pd.DataFrame({"kva": kva, "charge": charge})
    grouped = frame.groupby(["kva", "charge"], sort=False).size().reset_index(name="days")
    return tuple(
        PowerTerm(float(kva), int(days), float(charge))
        for kva, charge, days in grouped.itertuples(index=False, name=None)
    )


def _fee(rules: TaxRules, kind: str) -> str:
    return f"VAT {rules.vat_rate(kind):.0%}"


def compose_bill(inputs: BillInputs, rules: TaxRules) -> Bill:
    """Price a bill: energy per tariff period, power terms, excise, audiovisual contribution, DGEG
    fee and VAT per rate (the reduced rate on the period's allowance of energy, pro rata over its
    tariff periods, and on small power terms), then the export revenue as a credit."""
    check_columns(inputs.energy, ENERGY_COLUMNS, "energy")
    lines: list[BillLine] = []
    vat_base = {"reduced": 0.0, "normal": 0.0}
    vat_parts: dict[str, list[str]] = {"reduced": [], "normal": []}

    total_kwh = float(np.nansum(inputs.energy["energy_imported_kwh"].to_numpy(dtype=float)))
    energy_eur = 0.0
    for period, kwh, cost in inputs.energy[list(ENERGY_COLUMNS)].itertuples(index=False, name=None):
        amount = cents(float(cost))
        energy_eur += amount
        unit_price = float(cost) / float(kwh) if kwh else 0.0
        lines.append(BillLine("energy", f"Energy, {period} period", float(kwh), "kWh", unit_price, amount))
    energy_eur = cents(energy_eur)

    eligible = inputs.contracted_power_kva <= rules.reduced_vat_energy_max_kva + 1e-9
    per_30_days = (
        rules.reduced_vat_kwh_per_30_days_large_family
        if inputs.large_family
        else rules.reduced_vat_kwh_per_30_days
    )
    allowance_kwh = per_30_days * inputs.period_days / DAYS_PER_VAT_ALLOWANCE if eligible else 0.0
    reduced_kwh = min(total_kwh, allowance_kwh)
    # The allowance covers the same share of every tariff period's energy (pro rata).
    reduced_energy_eur = cents(energy_eur * reduced_kwh / total_kwh) if total_kwh > 0 else 0.0
    vat_base["reduced"] += reduced_energy_eur
    vat_base["normal"] += energy_eur - reduced_energy_eur
    if reduced_kwh > 0:
        vat_parts["reduced"].append(f"the energy of the first {reduced_kwh:.1f} kWh")
    if energy_eur - reduced_energy_eur > 0:
        vat_parts["normal"].append("the rest of the energy" if reduced_kwh > 0 else "the energy")

    power_eur = 0.0
    for term in inputs.power_terms:
        amount = cents(term.days * term.eur_per_day)
        power_eur += amount
        kind = "reduced" if term.contracted_power_kva <= rules.reduced_vat_power_max_kva + 1e-9 else "normal"
        vat_base[kind] += amount
        vat_parts[kind].append(f"the power term of {term.contracted_power_kva:g} kVA")
        lines.append(
            BillLine(
                "power",
                f"Power term, {term.contracted_power_kva:g} kVA",
                float(term.days),
                "day",
                term.eur_per_day,
                amount,
            )
        )
    power_eur = cents(power_eur)

    excise = rules.excise_eur_per_kwh
    fees = (
        ("excise", "Excise duty on electricity (IEC)", total_kwh, "kWh", excise, rules.excise_vat),
        ("audiovisual", "Audiovisual contribution (CAV)", 1.0, "month", rules.audiovisual_eur_per_month,
         rules.audiovisual_vat),
        ("dgeg", "DGEG fee", 1.0, "month", rules.dgeg_eur_per_month, rules.dgeg_vat),
    )  # fmt: skip
    taxes_eur = 0.0
    for kind, description, quantity, unit, unit_price, vat_kind in fees:
        amount = cents(quantity * unit_price)
        taxes_eur += amount
        vat_base[vat_kind] += amount
        vat_parts[vat_kind].append(f"the {kind} line")
        lines.append(BillLine(kind, description, quantity, unit, unit_price, amount))

    for kind in ("reduced", "normal"):
        base = cents(vat_base[kind])
        if base <= 0:
            continue
        amount = cents(base * rules.vat_rate(kind))
        taxes_eur += amount
        description = f"{_fee(rules, kind)} on {', '.join(vat_parts[kind])}"
        lines.append(BillLine("vat", description, base, "EUR", rules.vat_rate(kind), amount))
    taxes_eur = cents(taxes_eur)

    export_revenue_eur = cents(inputs.export_revenue_eur)
    if inputs.exported_kwh > 0 or export_revenue_eur > 0:
        unit_price = inputs.export_revenue_eur / inputs.exported_kwh if inputs.exported_kwh else 0.0
        lines.append(
            BillLine(
                "export", "Energy exported (not subject to VAT)", inputs.exported_kwh, "kWh", unit_price,
                -export_revenue_eur,
            )
        )  # fmt: skip
    before_taxes_eur = cents(energy_eur + power_eur)
    after_taxes_eur = cents(before_taxes_eur + taxes_eur)
    return Bill(
        tuple(lines),
        energy_eur,
        power_eur,
        before_taxes_eur,
        taxes_eur,
        after_taxes_eur,
        export_revenue_eur,
        cents(after_taxes_eur - export_revenue_eur),
        reduced_kwh,
    )


@dataclasses.dataclass(frozen=True)
class DailyProfile:
    """A household's recent days: mean energy and cost per tariff period per day, the spread of a
    day's imported energy, mean export per day."""

    days: int
    energy_per_day: pd.DataFrame  # ENERGY_COLUMNS
    daily_kwh_std: float
    exported_kwh_per_day: float
    export_revenue_eur_per_day: float


def daily_profile(buckets: pd.DataFrame, until_s: int, days: int = PROFILE_DAYS) -> DailyProfile | None:
    """The profile of the whole 24-hour blocks, counted back from `until_s`, among the last `days`
    (a block is whole when all its 96 quarter hours hold data); None without any whole block."""
    check_columns(buckets, BILL_BUCKET_COLUMNS, "buckets")
    starts = buckets["bucket_start"].to_numpy(dtype=np.int64)
    block = (until_s - 1 - starts) // SECONDS_PER_DAY
    recent = buckets.assign(block=block)[(block >= 0) & (block < days)]
    recent = recent[recent["energy_imported_kwh"].notna()]
    counts = recent.groupby("block").size()
    whole = counts.index[counts >= SECONDS_PER_DAY // BUCKET_SECONDS]
    if whole.empty:
        return None
    chosen = recent[recent["block"].isin(whole)]
    n = len(whole)
    per_day = energy_by_period(chosen)
    per_day[["energy_imported_kwh", "energy_cost_eur"]] /= n
    daily_kwh = chosen.groupby("block")["energy_imported_kwh"].sum()
    return DailyProfile(
        n,
        per_day,
        float(daily_kwh.std(ddof=1)) if n > 1 else 0.0,
        float(np.nansum(chosen["energy_exported_kwh"].to_numpy(dtype=float))) / n,
        float(np.nansum(chosen["export_revenue_eur"].to_numpy(dtype=float))) / n,
    )


@dataclasses.dataclass(frozen=True)
class Projection:
    """A bill at period end: expected, and the low and high ends of its range."""

    remaining_days: float
    expected: Bill
    low: Bill
    high: Bill
    expected_kwh: float
    low_kwh: float
    high_kwh: float


def project_bill(
    so_far: BillInputs,
    full_period: tuple[tuple[PowerTerm, ...], float],
    profile: DailyProfile,
    remaining_days: float,
    rules: TaxRules,
) -> Projection:
    """Add `remaining_days` of the profile's mean day to what the period used so far, with the
    power terms and days (`full_period`) of the whole period. The range
    spreads the remaining energy by RANGE_Z standard deviations of a day's total times the square
    root of the remaining days (days taken as independent), keeping each tariff period's share."""
    remaining_kwh = float(profile.energy_per_day["energy_imported_kwh"].sum()) * remaining_days
    spread_kwh = RANGE_Z * profile.daily_kwh_std * math.sqrt(max(remaining_days, 0.0))
    known = so_far.energy.set_index("tariff_period")[["energy_imported_kwh", "energy_cost_eur"]]
    mean_day = profile.energy_per_day.set_index("tariff_period")[["energy_imported_kwh", "energy_cost_eur"]]
    so_far_kwh = float(known["energy_imported_kwh"].sum())

    def scenario(factor: float) -> Bill:
        energy = known.add(mean_day * remaining_days * factor, fill_value=0.0).reset_index()
        inputs = dataclasses.replace(
            so_far,
            energy=energy[list(ENERGY_COLUMNS)],
            power_terms=full_period[0],
            period_days=full_period[1],
            exported_kwh=so_far.exported_kwh + profile.exported_kwh_per_day * remaining_days,
            export_revenue_eur=so_far.export_revenue_eur
            + profile.export_revenue_eur_per_day * remaining_days,
        )
        return compose_bill(inputs, rules)

    low_factor = max(remaining_kwh - spread_kwh, 0.0) / remaining_kwh if remaining_kwh > 0 else 1.0
    high_factor = (remaining_kwh + spread_kwh) / remaining_kwh if remaining_kwh > 0 else 1.0
    return Projection(
        remaining_days,
        scenario(1.0),
        scenario(low_factor),
        scenario(high_factor),
        so_far_kwh + remaining_kwh,
        so_far_kwh + remaining_kwh * low_factor,
        so_far_kwh + remaining_kwh * high_factor,
    )
