"""A household's consumption over a month against comparable households, from the stored groups."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.peers import (
    MIN_COVERAGE,
    MIN_PEERS,
    PERCENTILE_RESOLUTION_KWH,
    percentile_rank,
)
from statistics_manager_service.exception_handling_utils.errors import (
    Conflict,
    NotFound,
    UserNotFound,
)
from statistics_manager_service.query.params import parse_month
from statistics_manager_service.recompute.peers import ComparedDays, household_peer_rows
from statistics_manager_service.recompute.updater import StatisticsUpdater
from statistics_manager_service.storage.peers import (
    StoredGroup,
    latest_period,
    load_computed_period,
    load_period_groups,
)
from statistics_manager_service.storage.tables import Household

PEER_METHOD = (
    f"households of the same grid zone, tariff option, contracted power band and PV or not (a"
    f" generation register or exported energy in the period), each counted when readings back at least"
    f" {MIN_COVERAGE:.0%} of the compared local days; a comparison needs at least {MIN_PEERS} of them."
    " `percentile` places the household's consumption among the group's percentiles, interpolated"
    " between households' consumption (0 below the 1st, 100 above the 99th); `median_kwh` and"
    " `efficient_kwh` (the 20th percentile) are each the mean of the interpolated consumption at their"
    " rank and one household's place either side of it, so that each blends at least three households"
    f" and none is read off one household alone; all rounded to {PERCENTILE_RESOLUTION_KWH} kWh."
    " An open month is compared to date: the same days, from the"
    " 1st to the day before the groups were computed, for every household"
)


def peer_period(period: str | None) -> str | None:
    """Validate a `YYYY-MM` period (None: the newest month with computed groups)."""
    if period is None:
        return None
    parse_month(period)
    return period


def _key(stored: StoredGroup) -> tuple[str, str, str, bool]:
    group = stored.group
    return group.zone, group.tariff_type, group.power_band, group.pv


def _group_json(group: StoredGroup, contracted_power_kva: float) -> dict[str, Any]:
    return {
        "zone": group.group.zone,
        "tariff_type": group.group.tariff_type,
        "power_band": group.group.power_band,
        "contracted_power_kva": contracted_power_kva,
        "pv": group.group.pv,
    }


def load_peer_comparison(
    session: Session, user_id: str, period: str | None, statistics: StatisticsUpdater
) -> dict[str, Any]:
    """Place the household's consumption over a month's compared days among its group's."""
    household = session.get(Household, user_id)
    if household is None:
        raise UserNotFound(user_id)
    period = period or latest_period(session)
    computed = load_computed_period(session, period) if period else None
    if period is None or computed is None:
        raise Conflict(
            f"no peer groups are computed for {period or 'any month'} yet: the workers compute those of"
            " the open and the previous month every PEER_COMPARISON_INTERVAL_S (the open month from its"
            " second day on); ask for one of those months, or try again later"
        )
    days = ComparedDays(
        period,
        dt.date.fromisoformat(computed.first_day),
        dt.date.fromisoformat(computed.last_day),
        computed.complete,
    )
    row = household_peer_rows(session, statistics, [household], days).iloc[0]
    compared = f"{days.first_day} to {days.last_day}"
    if row["consumption_kwh"] != row["consumption_kwh"]:  # NaN: no statistics on those days
        raise NotFound(
            f'user "{user_id}" has no consumption in {period} (compared days {compared}): no reading'
            " backs those days, so there is nothing to compare; ask for a month with readings"
        )
    if row["coverage"] < MIN_COVERAGE:
        raise Conflict(
            f'user "{user_id}" has readings backing {row["coverage"]:.0%} of the compared days of'
            f" {period} ({compared}); a household is compared when they back at least"
            f" {MIN_COVERAGE:.0%}, so that months with missing days are not ranked as frugal ones"
        )
    key = (row["zone"], row["tariff_type"], row["power_band"], bool(row["pv"]))
    group = next((g for g in load_period_groups(session, period) if _key(g) == key), None)
    if group is None or group.group.percentiles_kwh is None:
        pv = "with PV" if key[3] else "without PV"
        raise Conflict(
            f"fewer than {MIN_PEERS} comparable households in {period} (zone {key[0]}, tariff {key[1]},"
            f" contracted power {key[2]} kVA, {pv}): a comparison needs at least {MIN_PEERS}, so that"
            " no household's consumption can be told from it; the exact number is not disclosed"
        )
    consumption = float(row["consumption_kwh"])
    percentiles = group.group.percentiles_kwh
    return {
        "user_id": user_id,
        "period": period,
        "first_day": computed.first_day,
        "last_day": computed.last_day,
        "complete": computed.complete,
        "consumption_kwh": round(consumption, 3),
        "coverage": round(float(row["coverage"]), 4),
        "units": "kWh",
        "percentile": round(percentile_rank(consumption, percentiles), 1),
        "median_kwh": group.group.median_kwh,
        "efficient_kwh": group.group.efficient_kwh,
        "households": group.group.households,
        "group": _group_json(group, float(row["contracted_power_kva"])),
        "computed_at": dt.datetime.fromtimestamp(computed.computed_at, dt.UTC).isoformat(),
        "method": PEER_METHOD,
    }
