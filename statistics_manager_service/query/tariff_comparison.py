"""What a household's consumption would have cost under every option of its tariff book, and the
smallest standard contracted power that covers its highest 15-minute demand."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.bill import cents
from statistics_manager_service.aggregation.contracts import contracts_at
from statistics_manager_service.aggregation.granularity import BUCKET_SECONDS, SECONDS_PER_HOUR
from statistics_manager_service.aggregation.localtime import format_local_iso
from statistics_manager_service.aggregation.tariff_book import TariffBook
from statistics_manager_service.aggregation.tariffs import power_level_at_or_above
from statistics_manager_service.exception_handling_utils.errors import UserNotFound
from statistics_manager_service.query.params import parse_range
from statistics_manager_service.recompute.views import (
    QuarterHourInputs,
    load_quarter_hour_inputs,
    priced_under,
    quarter_hours,
)

MAX_RANGE_DAYS = 366
_COST_COLUMNS = ("energy_cost_eur", "fixed_cost_eur", "export_revenue_eur", "net_cost_eur")


def comparison_range(start_date: str, end_date: str | None, now: dt.datetime) -> tuple[int, int]:
    """Validate the range: start before end, at most MAX_RANGE_DAYS days. Without an end, the range
    ends with the quarter hour in progress (its buckets so far are all there is of it), so every
    request of one quarter hour asks for the same range."""
    quarter_end = dt.datetime.fromtimestamp(
        -(-int(now.timestamp()) // BUCKET_SECONDS) * BUCKET_SECONDS, dt.UTC
    )
    return parse_range(start_date, end_date, quarter_end, MAX_RANGE_DAYS)


def _sums(frame: pd.DataFrame) -> dict[str, float]:
    return {
        name.removesuffix("_eur"): cents(float(np.nansum(frame[name].to_numpy(dtype=float))))
        if name in frame.columns
        else 0.0
        for name in _COST_COLUMNS
    }


def load_comparison_inputs(
    session: Session, user_id: str, start_s: int, end_s: int, default_timezone: str
) -> QuarterHourInputs:
    """Read what `compare_tariffs` needs; the household must exist."""
    inputs = load_quarter_hour_inputs(session, default_timezone, user_id, start_s, end_s)
    if inputs.household is None:
        raise UserNotFound(user_id)
    return inputs


def compare_tariffs(inputs: QuarterHourInputs, start_s: int, end_s: int, book: TariffBook) -> dict[str, Any]:
    """Price the household's 15-minute consumption of [start_s, end_s) with every tariff of the
    book (dynamic only where the zone has prices in the range) and its power at the smallest
    standard level that covers its highest 15-minute demand: the buckets are computed once and
    priced under each option."""
    user_id, contracts, calendars = inputs.user_id, inputs.contracts, inputs.calendars
    users = np.array([user_id], dtype=object)
    current = contracts_at(contracts, users, np.array([end_s - 1], dtype=np.int64)).iloc[0]
    prices = inputs.energy_prices
    has_prices = not prices.empty and bool((prices["direction"] == "import").any())
    options = [name for name, spec in book.tariffs.items() if not spec.priced_by_series or has_prices]
    buckets = quarter_hours(inputs)
    frames = priced_under(inputs, buckets, book, [{"tariff_type": name} for name in options])
    priced: list[dict[str, Any]] = [
        {
            "tariff_type": name,
            "cycle": book.tariffs[name].schedule,
            **_sums(frame),
            "current": name == current["tariff_type"],
        }
        for name, frame in zip(options, frames, strict=True)
    ]
    cheapest = min(priced, key=lambda option: option["net_cost"])
    current_option = next((option for option in priced if option["current"]), None)
    bounds = np.array([start_s, end_s], dtype=np.int64)
    start_iso, end_iso = format_local_iso(bounds, calendars.zones_at(np.repeat(users, 2), bounds)).tolist()
    reference = frames[options.index(current_option["tariff_type"])] if current_option else frames[0]
    imported_kwh = float(np.nansum(reference.get("energy_imported_kwh", pd.Series(dtype=float))))
    return {
        "user_id": user_id,
        "start": start_iso,
        "end": end_iso,
        "currency": book.currency,
        "energy_imported_kwh": round(imported_kwh, 3),
        "current": current["tariff_type"],
        "cheapest": cheapest["tariff_type"],
        "saving": cents(current_option["net_cost"] - cheapest["net_cost"]) if current_option else None,
        "options": priced,
        "power": _power_advice(inputs, book, buckets, reference, current),
    }


def _power_advice(
    inputs: QuarterHourInputs,
    book: TariffBook,
    buckets: pd.DataFrame,
    reference: pd.DataFrame,
    current: pd.Series,
) -> dict[str, Any]:
    """The highest 15-minute grid demand and the smallest standard power covering it, with the
    power term it would have cost over the same buckets."""
    contracted = float(current["contracted_power_kva"])
    if reference.empty or reference["energy_imported_kwh"].isna().all():
        return {"peak_demand_kw": None, "peak_at": None, "contracted_power_kva": contracted,
                "recommended_kva": None, "fixed_cost_current": None, "fixed_cost_recommended": None,
                "saving": None}  # fmt: skip
    demand_kw = reference["energy_imported_kwh"].to_numpy(dtype=float) * (SECONDS_PER_HOUR / BUCKET_SECONDS)
    peak = int(np.nanargmax(demand_kw))
    peak_kw = float(demand_kw[peak])
    # kVA taken as kW (power factor 1): the ladder's smallest level at or above the peak.
    level = int(power_level_at_or_above(book, np.array([peak_kw]))[0])
    recommended = float(book.power_levels_kva[level]) if level < len(book.power_levels_kva) else None
    peak_s = np.array([int(reference["bucket_start"].iloc[peak])], dtype=np.int64)
    users = np.array([inputs.user_id], dtype=object)
    peak_at = format_local_iso(peak_s, inputs.calendars.zones_at(users, peak_s)).iloc[0]
    fixed_current = cents(float(np.nansum(reference["fixed_cost_eur"].to_numpy(dtype=float))))
    fixed_recommended = None
    if recommended is not None:
        (under,) = priced_under(inputs, buckets, book, [{"contracted_power_kva": recommended}])
        fixed_recommended = cents(float(np.nansum(under["fixed_cost_eur"].to_numpy(dtype=float))))
    return {
        "peak_demand_kw": round(peak_kw, 3),
        "peak_at": peak_at,
        "contracted_power_kva": contracted,
        "recommended_kva": recommended,
        "fixed_cost_current": fixed_current,
        "fixed_cost_recommended": fixed_recommended,
        "saving": cents(fixed_current - fixed_recommended) if fixed_recommended is not None else None,
    }
