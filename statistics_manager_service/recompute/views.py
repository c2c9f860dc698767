"""Statistics of the levels that are not stored, computed when asked for by the engine's own path:
quarter hours and hours from the stored readings, weeks, months and years from the stored days."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.contracts import Calendars
from statistics_manager_service.aggregation.granularity import STORED_LEVEL, Level
from statistics_manager_service.aggregation.rollup import (
    covering_periods,
    rollup,
)
from statistics_manager_service.aggregation.tariffs import TariffBook, price_buckets_under
from statistics_manager_service.recompute.inputs import (
    buckets_inside,
    clipped,
    household_contracts,
    inside_windows,
    priced_buckets,
    readings_with_context,
    resolved_contracts,
)
from statistics_manager_service.storage.contracts import load_contract_versions
from statistics_manager_service.storage.periods import load_period_windows
from statistics_manager_service.storage.signals import load_intensity, load_prices
from statistics_manager_service.storage.tables import Household


def period_statistics(
    session: Session,
    book: TariffBook,
    default_timezone: str,
    user_ids: Sequence[str],
    start_s: int,
    end_s: int,
    level: Level,
    with_update_times: bool = False,
    partial: bool = False,
) -> pd.DataFrame:
    """Compute the periods of `level` of households that start in [start_s, end_s).

    Columns: `user_id`, `period_start` and the statistics, sorted by household and start; with
    `with_update_times` also `updated_at`, of the newest data the period comes from. With
    `partial`, a period rolls up only its children inside [start_s, end_s) (a month to date): the
    range must lie inside one period of each household.
    """
    statement = sa.select(Household).where(Household.user_id.in_(sorted(set(user_ids))))
    households = {household.user_id: household for household in session.scalars(statement)}
    windows = pd.DataFrame({"user_id": list(households), "start_s": start_s, "end_s": end_s})
    windows = clipped(households, windows)
    if windows.empty:
        return pd.DataFrame({"user_id": pd.Series(dtype=object), "period_start": pd.Series(dtype="int64")})
    contracts, calendars = household_contracts(session, households, default_timezone)
    if partial:
        # The range is whole local days: a household's first and last day count whole, as the
        # stored day rows hold them, not from its first reading's quarter hour.
        windows = windows.assign(start_s=start_s, end_s=end_s)
    elif level.engine is not None:
        windows = covering_periods(windows, calendars, level.engine)
    if level.source == STORED_LEVEL.name:
        children = load_period_windows(session, windows, STORED_LEVEL.name, with_update_times)
    else:
        readings = readings_with_context(session, households, windows)
        children = priced_buckets(session, book, contracts, calendars, windows, readings, with_update_times)
        children = children.rename(columns={"bucket_start": "period_start"})
        if level.engine is None:
            return children.sort_values(["user_id", "period_start"], kind="stable").reset_index(drop=True)
    assert level.engine is not None
    periods = rollup(children, calendars, level.engine)
    # A partial period starts before its range: its children were chosen by the range already.
    return periods if partial else inside_windows(periods, windows, "period_start")


@dataclasses.dataclass(frozen=True)
class HouseholdContracts:
    """A household's row and its contract history, as stored (`load_contract_versions`, with the
    billing terms) and resolved for the engine, with the calendars it gives."""

    user_id: str
    household: Household | None
    stored: pd.DataFrame
    contracts: pd.DataFrame
    calendars: Calendars


def load_household_contracts(session: Session, default_timezone: str, user_id: str) -> HouseholdContracts:
    """Read a household and its contract history."""
    household = session.get(Household, user_id)
    households = {} if household is None else {user_id: household}
    stored = load_contract_versions(session, [user_id])
    contracts, calendars = resolved_contracts(stored, households, default_timezone)
    return HouseholdContracts(user_id, household, stored, contracts, calendars)


@dataclasses.dataclass(frozen=True)
class QuarterHourInputs:
    """What a household's 15-minute buckets of a range are computed from, read in one session so
    that the computation can run after the session is given back."""

    user_id: str
    household: Household | None
    contracts: pd.DataFrame
    calendars: Calendars
    windows: pd.DataFrame
    readings: pd.DataFrame
    energy_prices: pd.DataFrame
    carbon_intensity: pd.DataFrame


def load_quarter_hour_inputs(
    session: Session,
    default_timezone: str,
    user_id: str,
    start_s: int,
    end_s: int,
    known: HouseholdContracts | None = None,
) -> QuarterHourInputs:
    """Read what `quarter_hours` and `priced_under` need for a household's buckets in
    [start_s, end_s); `known`: its household and contracts, when the caller has read them."""
    known = known or load_household_contracts(session, default_timezone, user_id)
    household, contracts, calendars = known.household, known.contracts, known.calendars
    households = {} if household is None else {user_id: household}
    windows = clipped(households, pd.DataFrame({"user_id": [user_id], "start_s": start_s, "end_s": end_s}))
    if windows.empty:
        return QuarterHourInputs(user_id, household, contracts, calendars, windows, *([pd.DataFrame()] * 3))
    zones = contracts["zone"].unique().tolist()
    first_s, last_s = int(windows["start_s"].min()), int(windows["end_s"].max())
    return QuarterHourInputs(
        user_id,
        household,
        contracts,
        calendars,
        windows,
        readings_with_context(session, households, windows),
        load_prices(session, zones, first_s, last_s),
        load_intensity(session, zones, first_s, last_s),
    )


def quarter_hours(inputs: QuarterHourInputs) -> pd.DataFrame:
    """The household's 15-minute buckets in the range, not yet priced."""
    if inputs.windows.empty:
        return pd.DataFrame({"user_id": pd.Series(dtype=object), "bucket_start": pd.Series(dtype="int64")})
    return buckets_inside(inputs.readings, inputs.windows)


def priced_under(
    inputs: QuarterHourInputs, buckets: pd.DataFrame, book: TariffBook, variants: Sequence[dict[str, Any]]
) -> list[pd.DataFrame]:
    """Price the buckets (`quarter_hours`) once per variant of the household's contract: each
    variant replaces fields (`tariff_type`, `contracted_power_kva`) in every version of its
    history; `{}` prices them as /energy-cost does. Each frame is sorted by start."""
    if buckets.empty:
        return [buckets for _ in variants]
    priced = price_buckets_under(
        buckets,
        [inputs.contracts.assign(**variant) for variant in variants],
        book,
        inputs.energy_prices,
        inputs.carbon_intensity,
        inputs.calendars,
    )
    return [frame.sort_values("bucket_start", kind="stable").reset_index(drop=True) for frame in priced]
