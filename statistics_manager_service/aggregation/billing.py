"""A household's billing terms, kept in its contract history: the day its billing periods start on,
the large-family flag and its budget for one period; the billing periods they give; whether a
projected bill goes over the budget.

Billing terms are effective-dated like the rest of the contract: each version states some of
them, one it leaves out keeps the value in force before it, and the earliest version also covers
the time before it. They price no bucket.

The billing period of a month M starts on the billing day in force at the start of M's first
local day, and ends where the period of month M + 1 starts (its own billing day, in force at the
start of M + 1's first day). With one billing day throughout, a period runs from that day to the
day before it next month; a change of billing day makes the period before it longer or shorter,
so consecutive periods never overlap and never leave a gap.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Literal

import numpy as np
import pandas as pd

from statistics_manager_service.aggregation.arrays import IntArray, ObjectArray, check_columns
from statistics_manager_service.aggregation.contracts import carried_forward, in_force

# The billing terms a contract version may state (NULL / NaN: not stated).
BILLING_FIELDS = ("billing_day", "large_family", "bill_budget_eur")
BILLING_COLUMNS = ("user_id", "effective_s", *BILLING_FIELDS)
FIRST_BILLING_DAY, LAST_BILLING_DAY = 1, 28  # every month has a 28th
DEFAULT_BILLING_DAY = FIRST_BILLING_DAY
# A version that clears the budget states 0 (a budget is positive).
CLEARED_BUDGET_EUR = 0.0
# Where a billing term of a bill came from.
TermSource = Literal["contract", "request", "default"]


@dataclasses.dataclass(frozen=True)
class BillingTerms:
    """The billing terms in force at one instant; None where no version in force states one."""

    billing_day: int | None
    large_family: bool | None
    bill_budget_eur: float | None  # None: no budget (never stated, or cleared)


NO_TERMS = BillingTerms(None, None, None)


def resolve_billing_terms(stated: pd.DataFrame) -> pd.DataFrame:
    """Sort versions (BILLING_COLUMNS) by household and instant; fill each term a version does not
    state with the one in force before it (still missing before any version states it)."""
    check_columns(stated, BILLING_COLUMNS, "billing terms")
    dtypes = {"billing_day": "float64", "large_family": "object", "bill_budget_eur": "float64"}
    return carried_forward(stated[list(BILLING_COLUMNS)], dtypes)


def billing_terms_at(resolved: pd.DataFrame, users: ObjectArray, instants_s: IntArray) -> list[BillingTerms]:
    """Return the billing terms in force for each (user, instant) of resolved terms; a household
    without any version has none."""
    known = np.isin(users, resolved["user_id"].to_numpy(dtype=object))
    terms = [NO_TERMS] * users.size
    if not known.any():
        return terms
    positions = in_force(
        resolved["user_id"].to_numpy(dtype=object),
        resolved["effective_s"].to_numpy(dtype=np.int64),
        users[known],
        instants_s[known],
    )
    rows = resolved.iloc[positions]
    for at, day, large, budget in zip(
        np.flatnonzero(known),
        rows["billing_day"].tolist(),
        rows["large_family"].tolist(),
        rows["bill_budget_eur"].tolist(),
        strict=True,
    ):
        terms[at] = BillingTerms(
            None if _missing(day) else int(day),
            None if _missing(large) else bool(large),
            None if _missing(budget) or budget <= CLEARED_BUDGET_EUR else float(budget),
        )
    return terms


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def month_after(year: int, month: int) -> tuple[int, int]:
    """The month after (year, month)."""
    return (year + 1, 1) if month == 12 else (year, month + 1)


def month_before(year: int, month: int) -> tuple[int, int]:
    """The month before (year, month)."""
    return (year - 1, 12) if month == 1 else (year, month - 1)


def billing_period(year: int, month: int, day: int, next_day: int) -> tuple[dt.date, dt.date]:
    """The first day of the period of a month starting on billing `day`, and the first day of the
    next period (on `next_day` of the next month, the billing day in force then)."""
    following = month_after(year, month)
    return dt.date(year, month, day), dt.date(*following, next_day)


def over_budget(after_taxes_eur: float, budget_eur: float | None) -> bool | None:
    """Whether a bill after taxes is above a budget; None without a budget."""
    if budget_eur is None:
        return None
    return after_taxes_eur > budget_eur
