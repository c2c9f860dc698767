"""Which peer group a household belongs to over a month, and its consumption there: read from the
stored days through `period_statistics`, the path of `/energy-consumption?group_by=monthly`.

A month is compared over the same local days for every household: a closed month whole, the
open one from the 1st to yesterday (of `DEFAULT_TIMEZONE`'s calendar), so a month to date is
compared with other months to date over the same elapsed days.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.contracts import contracts_at
from statistics_manager_service.aggregation.granularity import LEVEL
from statistics_manager_service.aggregation.localtime import day_number, first_of_next_month
from statistics_manager_service.aggregation.peers import GROUP_COLUMNS, MIN_COVERAGE, has_pv, power_band
from statistics_manager_service.recompute.inputs import household_contracts
from statistics_manager_service.recompute.updater import StatisticsUpdater
from statistics_manager_service.storage.tables import Household

# One row per household read: its group key, its consumption over the compared days and their
# share backed by readings, and the contracted power the band comes from.
HOUSEHOLD_COLUMNS = ("user_id", *GROUP_COLUMNS, "contracted_power_kva", "consumption_kwh", "coverage")


@dataclasses.dataclass(frozen=True)
class ComparedDays:
    """The local days of a month that are compared: the 1st to `last_day`."""

    period: str  # YYYY-MM
    first_day: dt.date
    last_day: dt.date
    complete: bool  # the month is over: every one of its days is compared


def month_of(period: str) -> tuple[int, int]:
    """Return (year, month) of a `YYYY-MM` period; ValueError when it is not one."""
    year_text, month_text = period.split("-")
    year, month = int(year_text), int(month_text)
    dt.date(year, month, 1)
    return year, month


def compared_days(period: str, today: dt.date) -> ComparedDays | None:
    """Return the days of `period` compared on `today`: all of a closed month, the days before
    today of the open one; None before the open month's second day, or for a future month."""
    year, month = month_of(period)
    first = dt.date(year, month, 1)
    following = first_of_next_month(first)
    last = min(following - dt.timedelta(days=1), today - dt.timedelta(days=1))
    if last < first:
        return None
    return ComparedDays(period, first, last, complete=today >= following)


def household_peer_rows(
    session: Session, statistics: StatisticsUpdater, households: Sequence[Household], days: ComparedDays
) -> pd.DataFrame:
    """Return `HOUSEHOLD_COLUMNS` of each household over the compared days of its own calendar.

    The group key comes from the contract in force at the last compared instant (zone, tariff
    option, contracted power band) and from the household's statistics of those days: PV when a
    generation register reported or energy was exported. `consumption_kwh` is NaN without any
    statistics of those days.
    """
    by_id = {household.user_id: household for household in households}
    if not by_id:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in HOUSEHOLD_COLUMNS})
    contracts, calendars = household_contracts(session, by_id, statistics.default_timezone)
    users = np.array(sorted(by_id), dtype=object)
    first_day = day_number(days.first_day)
    starts = calendars.day_starts(users, np.full(users.size, first_day, dtype=np.int64))
    ends = calendars.day_starts(users, np.full(users.size, day_number(days.last_day) + 1, dtype=np.int64))
    contract = contracts_at(contracts, users, ends - 1)
    rows = pd.DataFrame(
        {
            "user_id": users,
            "zone": contract["zone"].to_numpy(dtype=object),
            "tariff_type": contract["tariff_type"].to_numpy(dtype=object),
            "contracted_power_kva": contract["contracted_power_kva"].to_numpy(dtype=np.float64),
            "start_s": starts,
            "end_s": ends,
        }
    )
    rows["power_band"] = power_band(rows["contracted_power_kva"].to_numpy())
    # Households of one calendar share their range: one read for each.
    ranges = rows[["start_s", "end_s"]].drop_duplicates().itertuples(index=False)
    periods = [
        statistics.period_statistics(
            session,
            rows.loc[(rows["start_s"] == start_s) & (rows["end_s"] == end_s), "user_id"].tolist(),
            int(start_s),
            int(end_s),
            LEVEL["monthly"],
            partial=True,
        )
        for start_s, end_s in ranges
    ]
    wanted = ["consumption_kwh", "covered_seconds", "energy_generated_kwh", "energy_exported_kwh"]
    found = pd.concat([p for p in periods if not p.empty] or [pd.DataFrame(columns=["user_id"])])
    found = found.reindex(columns=["user_id", *wanted]).drop_duplicates("user_id", keep="last")
    rows = rows.merge(found, on="user_id", how="left")
    rows["consumption_kwh"] = rows["consumption_kwh"].astype("float64")
    covered = rows["covered_seconds"].astype("float64").fillna(0.0)
    rows["coverage"] = (covered / (rows["end_s"] - rows["start_s"])).clip(upper=1.0)
    rows["pv"] = has_pv(
        rows["energy_generated_kwh"].to_numpy(dtype=np.float64, na_value=np.nan),
        rows["energy_exported_kwh"].to_numpy(dtype=np.float64, na_value=np.nan),
    )
    return rows[list(HOUSEHOLD_COLUMNS)].reset_index(drop=True)


def counted(rows: pd.DataFrame) -> pd.DataFrame:
    """Keep the households that count in their group: statistics backing `MIN_COVERAGE` of the days."""
    return rows[rows["consumption_kwh"].notna() & (rows["coverage"] >= MIN_COVERAGE)].reset_index(drop=True)
