"""Which billing period a bill covers and with which terms: the request's, else the contract
history's (see `aggregation/billing.py` for the rule), else the defaults."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import numpy as np

from statistics_manager_service.aggregation.billing import (
    DEFAULT_BILLING_DAY,
    BillingTerms,
    TermSource,
    billing_period,
    billing_terms_at,
    month_after,
    month_before,
    resolve_billing_terms,
)
from statistics_manager_service.aggregation.contracts import Calendars
from statistics_manager_service.aggregation.localtime import date_of, day_number
from statistics_manager_service.recompute.views import HouseholdContracts


@dataclasses.dataclass(frozen=True)
class BillRequest:
    """Which bill: a household's billing period starting in a month (None: the current period),
    with the terms the request sets (None: the contract's)."""

    user_id: str
    year: int | None
    month: int | None
    billing_day: int | None
    large_family: bool | None


@dataclasses.dataclass(frozen=True)
class BillTerms:
    """A bill's period (local days [first, following)) and its terms, with where each came from."""

    first: dt.date
    following: dt.date
    billing_day: int
    billing_day_source: TermSource
    large_family: bool
    large_family_source: TermSource
    budget_eur: float | None

    def as_json(self) -> dict[str, Any]:
        """The answer's fields about the terms."""
        return {
            "billing_day": self.billing_day,
            "billing_day_source": self.billing_day_source,
            "large_family": self.large_family,
            "large_family_source": self.large_family_source,
            "budget": self.budget_eur,
        }


def bill_terms(known: HouseholdContracts, request: BillRequest, now: dt.datetime) -> BillTerms:
    """Resolve a bill's period and terms from the household's contract history. The contract's
    terms are those in force at the start of the first local day of the period's month; the period
    ends where the next month's starts."""
    user_id, calendars = known.user_id, known.calendars
    resolved = resolve_billing_terms(known.stored)

    def terms_of(months: list[tuple[int, int]]) -> list[BillingTerms]:
        days = np.array([day_number(dt.date(y, m, 1)) for y, m in months], dtype=np.int64)
        users = np.full(days.size, user_id, dtype=object)
        return billing_terms_at(resolved, users, calendars.day_starts(users, days))

    def day_of(terms: BillingTerms) -> int:
        return request.billing_day or terms.billing_day or DEFAULT_BILLING_DAY

    if request.year is None or request.month is None:
        # The current period: this month's, unless it starts after today.
        today = _local_date(calendars, user_id, now)
        year, month = today.year, today.month
        (this,) = terms_of([(year, month)])
        if today < dt.date(year, month, day_of(this)):
            year, month = month_before(year, month)
    else:
        year, month = request.year, request.month
    terms, following = terms_of([(year, month), month_after(year, month)])
    first, end = billing_period(year, month, day_of(terms), day_of(following))
    large_family = request.large_family if request.large_family is not None else bool(terms.large_family)
    return BillTerms(
        first,
        end,
        first.day,
        _source(request.billing_day, terms.billing_day),
        large_family,
        _source(request.large_family, terms.large_family),
        terms.bill_budget_eur,
    )


def _source(requested: object, in_contract: object) -> TermSource:
    if requested is not None:
        return "request"
    return "contract" if in_contract is not None else "default"


def _local_date(calendars: Calendars, user_id: str, now: dt.datetime) -> dt.date:
    users = np.array([user_id], dtype=object)
    days, _ = calendars.local_days_and_minutes(users, np.array([int(now.timestamp())], dtype=np.int64))
    return date_of(int(days[0]))
