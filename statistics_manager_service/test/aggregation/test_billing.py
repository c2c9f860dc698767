"""Billing terms in the pure engine: resolving effective-dated terms, the periods they give, and
whether a projected bill is over its budget, against hand-worked cases and a property."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from statistics_manager_service.aggregation.bill import Bill, Projection
from statistics_manager_service.aggregation.billing import (
    BillingTerms,
    billing_period,
    billing_terms_at,
    month_after,
    over_budget,
    resolve_billing_terms,
)


def _stated() -> pd.DataFrame:
    # Out of order on purpose; NaN / None: not stated; a budget of 0: cleared.
    return pd.DataFrame(
        {
            "user_id": ["a", "b", "a", "a", "a"],
            "effective_s": [300, 50, 100, 200, 400],
            "billing_day": [np.nan, np.nan, 15.0, np.nan, 3.0],
            "large_family": [True, None, None, None, None],
            "bill_budget_eur": [0.0, 70.0, np.nan, 80.0, np.nan],
        }
    )


def test_terms_in_force_carry_earlier_terms_forward_and_a_cleared_budget_is_none() -> None:
    resolved = resolve_billing_terms(_stated())
    users = np.array(["a"] * 6 + ["b", "b", "c"], dtype=object)
    instants = np.array([0, 100, 250, 300, 399, 400, 0, 10_000, 100], dtype=np.int64)
    assert billing_terms_at(resolved, users, instants) == [
        BillingTerms(15, None, None),  # before the first version: the first version
        BillingTerms(15, None, None),
        BillingTerms(15, None, 80.0),
        BillingTerms(15, True, None),
        BillingTerms(15, True, None),
        BillingTerms(3, True, None),
        BillingTerms(None, None, 70.0),
        BillingTerms(None, None, 70.0),
        BillingTerms(None, None, None),  # a household without versions
    ]


def test_a_period_runs_to_the_start_of_the_next_months_period() -> None:
    assert billing_period(2026, 1, 15, 15) == (dt.date(2026, 1, 15), dt.date(2026, 2, 15))
    assert billing_period(2026, 12, 1, 1) == (dt.date(2026, 12, 1), dt.date(2027, 1, 1))
    # The billing day moves from 1 to 15: a 44-day April; from 28 to 1: a 4-day February.
    assert billing_period(2026, 4, 1, 15) == (dt.date(2026, 4, 1), dt.date(2026, 5, 15))
    assert billing_period(2026, 2, 28, 1) == (dt.date(2026, 2, 28), dt.date(2026, 3, 1))


@given(st.integers(2000, 2098), st.integers(1, 12), st.lists(st.integers(1, 28), min_size=2, max_size=30))
def test_consecutive_periods_neither_overlap_nor_leave_a_gap(year: int, month: int, days: list[int]) -> None:
    # days[i]: the billing day in force at the start of the i-th month from (year, month).
    months = [(year, month)]
    for _ in days[1:]:
        months.append(month_after(*months[-1]))
    periods = [billing_period(*months[i], days[i], days[i + 1]) for i in range(len(days) - 1)]
    for (_, following), (next_first, _) in itertools.pairwise(periods):
        assert following == next_first
    for (first, following), (y, m), day in zip(periods, months, days, strict=False):
        assert (first.year, first.month, first.day) == (y, m, day)
        assert 1 <= (following - first).days <= 31 + 27


def _bill(after_taxes_eur: float) -> Bill:
    return Bill((), 0.0, 0.0, 0.0, 0.0, after_taxes_eur, 0.0, after_taxes_eur, 0.0)


def test_a_projection_is_over_budget_only_above_it() -> None:
    projection = Projection(10.0, _bill(60.0), _bill(50.0), _bill(75.0), 0.0, 0.0, 0.0)
    expected = projection.expected.after_taxes_eur  # what /bill and the alert compare
    assert over_budget(expected, 59.99) is True
    assert over_budget(expected, 60.0) is False  # the expected total, not the high end
    assert over_budget(expected, 70.0) is False
    assert over_budget(expected, None) is None
    assert over_budget(0.01, 0.0) is True
