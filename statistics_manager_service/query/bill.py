"""The bill of a household's billing period, and a projection of an open one."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.bill import (
    PROFILE_DAYS,
    RANGE_Z,
    Bill,
    BillInputs,
    compose_bill,
    daily_profile,
    energy_by_period,
    power_terms,
    project_bill,
)
from statistics_manager_service.aggregation.billing import over_budget
from statistics_manager_service.aggregation.granularity import BUCKET_SECONDS, SECONDS_PER_DAY
from statistics_manager_service.aggregation.localtime import day_number, format_local_iso
from statistics_manager_service.aggregation.tariff_book import TariffBook, taxes_in_force
from statistics_manager_service.exception_handling_utils.errors import BadRequest, ServiceError, UserNotFound
from statistics_manager_service.query.bill_terms import BillRequest, BillTerms, bill_terms
from statistics_manager_service.query.params import parse_month
from statistics_manager_service.recompute.views import (
    HouseholdContracts,
    QuarterHourInputs,
    load_household_contracts,
    load_quarter_hour_inputs,
    priced_under,
    quarter_hours,
)

_NUMBER_COLUMNS = (
    "energy_imported_kwh",
    "energy_cost_eur",
    "energy_exported_kwh",
    "export_revenue_eur",
    "covered_seconds",
)


def bill_request(
    user_id: str, period: str | None, billing_day: int | None, large_family: bool | None
) -> BillRequest:
    """Validate the period (`YYYY-MM`; none: the current period); None terms come from the contract."""
    if period is None:
        return BillRequest(user_id, None, None, billing_day, large_family)
    year, month = parse_month(period)
    return BillRequest(user_id, year, month, billing_day, large_family)


def _bill_json(bill: Bill) -> dict[str, Any]:
    return {
        "lines": [
            {
                "kind": line.kind,
                "description": line.description,
                "quantity": round(line.quantity, 3),
                "unit": line.unit,
                "unit_price": round(line.unit_price, 6),
                "amount": line.amount_eur,
            }
            for line in bill.lines
        ],
        "totals": _totals_json(bill),
    }


def _totals_json(bill: Bill) -> dict[str, float]:
    return {
        "energy": bill.energy_eur,
        "power": bill.power_eur,
        "before_taxes": bill.before_taxes_eur,
        "taxes_and_fees": bill.taxes_eur,
        "after_taxes": bill.after_taxes_eur,
        "export_revenue": bill.export_revenue_eur,
        "amount_due": bill.amount_due_eur,
    }


@dataclasses.dataclass(frozen=True)
class BillSpan:
    """A bill's period and terms, where the period lies and what of it has data, in epoch seconds
    and local days."""

    billing: BillTerms
    first_day: int
    end_day: int
    start_s: int
    end_s: int
    now_s: int
    data_until: int


def load_bill_inputs(
    session: Session,
    request: BillRequest,
    default_timezone: str,
    now: dt.datetime,
    known: HouseholdContracts | None = None,
) -> tuple[BillSpan, QuarterHourInputs]:
    """Read what `price_bill` needs: the period's quarter hours so far and, for an open period,
    the recent days its projection is drawn from; `known`: the household and its contracts, when
    the caller has read them."""
    user_id = request.user_id
    known = known or load_household_contracts(session, default_timezone, user_id)
    household, calendars = known.household, known.calendars
    if household is None:
        raise UserNotFound(user_id)
    billing = bill_terms(known, request, now)
    first = billing.first
    first_day, end_day = day_number(first), day_number(billing.following)
    users = np.array([user_id, user_id], dtype=object)
    start_s, end_s = (int(s) for s in calendars.day_starts(users, np.array([first_day, end_day])))
    now_s = int(now.timestamp())
    if start_s > now_s:
        raise BadRequest(
            f"period {first:%Y-%m} has not started yet; ask for the current period or an earlier one"
        )
    # Energy is known up to the end of the quarter hour the newest reading ends.
    last = household.last_reading_ts
    data_until = min(end_s, now_s, -(-int(last) // BUCKET_SECONDS) * BUCKET_SECONDS if last else start_s)
    is_open = now_s < end_s
    load_start = min(start_s, data_until - PROFILE_DAYS * SECONDS_PER_DAY) if is_open else start_s
    span = BillSpan(billing, first_day, end_day, start_s, end_s, now_s, data_until)
    inputs = load_quarter_hour_inputs(
        session, default_timezone, user_id, load_start, max(data_until, load_start + 1), known
    )
    return span, inputs


def price_bill(
    span: BillSpan, inputs: QuarterHourInputs, request: BillRequest, book: TariffBook
) -> dict[str, Any]:
    """Price a household's bill: closed periods from their statistics, an open one so far and as
    projected at its end from the household's recent days."""
    user_id, contracts, calendars = request.user_id, inputs.contracts, inputs.calendars
    billing, first_day, end_day = span.billing, span.first_day, span.end_day
    first = billing.first
    start_s, end_s, now_s, data_until = span.start_s, span.end_s, span.now_s, span.data_until
    rules = taxes_in_force(book, first)
    if rules is None:
        raise ServiceError("the tariff book has no taxes: add a `taxes` entry to TARIFFS_FILE to price bills")
    is_open = now_s < end_s
    (buckets,) = priced_under(inputs, quarter_hours(inputs), book, [{}])
    if buckets.empty:
        numbers = {name: pd.Series(dtype=float) for name in _NUMBER_COLUMNS}
        buckets = buckets.assign(**numbers, tariff_period=pd.Series(dtype=object))
    starts = buckets["bucket_start"].to_numpy(dtype=np.int64)
    in_period = buckets[(starts >= start_s) & (starts < end_s)]

    # Days so far: those of the period that have begun.
    users = np.array([user_id, user_id], dtype=object)
    users_now = np.array([user_id], dtype=object)
    today = int(calendars.local_days_and_minutes(users_now, np.array([min(now_s, end_s - 1)]))[0][0])
    elapsed_days = np.arange(first_day, min(today + 1, end_day), dtype=np.int64)
    all_days = np.arange(first_day, end_day, dtype=np.int64)
    terms = power_terms(book, contracts, calendars, user_id, elapsed_days)
    kva = terms[-1].contracted_power_kva if terms else float("nan")
    so_far = BillInputs(
        energy=energy_by_period(in_period),
        power_terms=terms,
        exported_kwh=float(np.nansum(in_period["energy_exported_kwh"].to_numpy(dtype=float))),
        export_revenue_eur=float(np.nansum(in_period["export_revenue_eur"].to_numpy(dtype=float))),
        period_days=float(elapsed_days.size),
        contracted_power_kva=kva,
        large_family=billing.large_family,
    )
    bill = compose_bill(so_far, rules)
    bounds = np.array([start_s, end_s], dtype=np.int64)
    start_iso, end_iso = format_local_iso(bounds, calendars.zones_at(users, bounds)).tolist()
    elapsed_s = min(now_s, end_s) - start_s
    covered = float(np.nansum(in_period["covered_seconds"].to_numpy(dtype=float)))
    answer: dict[str, Any] = {
        "user_id": user_id,
        "period": f"{first:%Y-%m}",
        "start": start_iso,
        "end": end_iso,
        "days": int(all_days.size),
        "status": "open" if is_open else "closed",
        "currency": book.currency,
        "contracted_power_kva": kva,
        **billing.as_json(),
        "energy_imported_kwh": round(float(so_far.energy["energy_imported_kwh"].sum()), 3),
        "reduced_vat_kwh": round(bill.reduced_vat_kwh, 3),
        "coverage": round(covered / elapsed_s, 4) if elapsed_s > 0 else None,
        **_bill_json(bill),
        "projection": None,
    }
    if is_open:
        answer["projection"] = _projection(
            so_far, (power_terms(book, contracts, calendars, user_id, all_days), float(all_days.size)),
            buckets, data_until, end_s, rules,
        )  # fmt: skip
        if answer["projection"] is not None:
            expected = answer["projection"]["after_taxes"]["expected"]
            answer["projection"]["exceeds_budget"] = over_budget(expected, billing.budget_eur)
    return answer


def _projection(
    so_far: BillInputs,
    full_period: Any,
    buckets: pd.DataFrame,
    data_until: int,
    end_s: int,
    rules: Any,
) -> dict[str, Any] | None:
    profile = daily_profile(buckets, data_until)
    if profile is None:
        return None
    remaining_days = (end_s - data_until) / SECONDS_PER_DAY
    projection = project_bill(so_far, full_period, profile, remaining_days, rules)

    def spread(low: float, expected: float, high: float) -> dict[str, float]:
        return {"low": low, "expected": expected, "high": high}

    bills = (projection.low, projection.expected, projection.high)
    return {
        "method": (
            f"the energy used so far, plus {remaining_days:.2f} remaining days at the mean day, per tariff"
            f" period, of the whole days among the last {PROFILE_DAYS} before the newest reading"
            f" ({profile.days} days); range: the remaining energy {RANGE_Z} standard deviations of a"
            " day's energy times the square root of the remaining days (a 90% interval if days are"
            " independent); the power term, the fees and the VAT allowance of the whole period"
        ),
        "profile_days": profile.days,
        "remaining_days": round(remaining_days, 4),
        "energy_imported_kwh": spread(
            *(round(v, 3) for v in (projection.low_kwh, projection.expected_kwh, projection.high_kwh))
        ),
        "after_taxes": spread(*(b.after_taxes_eur for b in bills)),
        "amount_due": spread(*(b.amount_due_eur for b in bills)),
        **_bill_json(projection.expected),
    }
