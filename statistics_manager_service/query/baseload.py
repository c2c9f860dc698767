"""The household's baseload over a range, its share of consumption and its yearly cost."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.baseload import (
    BASELOAD_METHOD,
    constant_load_buckets,
    estimate_baseload,
)
from statistics_manager_service.aggregation.contracts import contracts_at
from statistics_manager_service.aggregation.tariffs import price_buckets
from statistics_manager_service.exception_handling_utils.errors import UserNotFound
from statistics_manager_service.recompute import StatisticsUpdater
from statistics_manager_service.recompute.views import load_quarter_hour_inputs, quarter_hours

YEARLY_COST_PRICING = (
    "the baseload held for the 365 local days from today, priced by the tariff engine with the"
    " household's current contract and the tariff book's energy prices (taxes and the power charge"
    " excluded): for time-of-use tariffs each period's price weighs by the hours of the period, a"
    " dynamic tariff takes the book's fallback import price"
)


def _rounded(value: float | None, decimals: int) -> float | None:
    return None if value is None else round(value, decimals)


def load_baseload(
    session: Session, user_id: str, start_s: int, end_s: int, statistics: StatisticsUpdater, now: dt.datetime
) -> dict[str, Any]:
    """Estimate the baseload from the range's quarter hours and price a year of it."""
    inputs = load_quarter_hour_inputs(session, statistics.default_timezone, user_id, start_s, end_s)
    if inputs.household is None:
        raise UserNotFound(user_id)
    timezone = inputs.household.timezone or statistics.default_timezone
    buckets = quarter_hours(inputs).sort_values("bucket_start", kind="stable")
    estimate = estimate_baseload(
        buckets["bucket_start"].to_numpy(dtype=np.int64),
        buckets["consumption_kwh"].to_numpy(dtype=np.float64, na_value=np.nan)
        if "consumption_kwh" in buckets
        else np.empty(0),
        buckets["covered_seconds"].to_numpy(dtype=np.float64)
        if "covered_seconds" in buckets
        else np.empty(0),
        timezone,
    )
    contracts, calendars = inputs.contracts, inputs.calendars
    current = contracts_at(contracts, np.array([user_id], dtype=object), np.array([int(now.timestamp())]))
    body: dict[str, Any] = {
        "user_id": user_id,
        "timezone": timezone,
        "method": BASELOAD_METHOD,
        "nights": estimate.nights,
        "value": _rounded(estimate.baseload_w, 3),
        "units": "W",
        "consumption_kwh": _rounded(estimate.consumption_kwh, 6),
        "baseload_kwh": _rounded(estimate.baseload_kwh, 6),
        "share": _rounded(estimate.share, 6),
        "tariff_type": str(current["tariff_type"].iloc[0]),
        "yearly_energy_kwh": None,
        "yearly_cost": None,
        "yearly_cost_units": "EUR",
        "yearly_cost_pricing": YEARLY_COST_PRICING,
    }
    if estimate.baseload_w is None:
        return body
    today = now.astimezone(ZoneInfo(timezone)).date()
    first = dt.datetime.combine(today, dt.time(), ZoneInfo(timezone))
    last = dt.datetime.combine(today + dt.timedelta(days=365), dt.time(), ZoneInfo(timezone))
    year = constant_load_buckets(user_id, int(first.timestamp()), int(last.timestamp()), estimate.baseload_w)
    priced = price_buckets(year, contracts, statistics.book, pd.DataFrame(), pd.DataFrame(), calendars)
    body["yearly_energy_kwh"] = round(float(year["energy_imported_kwh"].sum()), 6)
    body["yearly_cost"] = round(float(priced["energy_cost_eur"].sum()), 6)
    return body
