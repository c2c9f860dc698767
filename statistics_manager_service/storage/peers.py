"""Peer groups as the periodic job computed them, and the households it reads in batches; every
function takes the caller's session."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.peers import PeerGroup
from statistics_manager_service.storage.locks import PEER_PERIOD_NAMESPACE, hold
from statistics_manager_service.storage.tables import Household, PeerGroupRow, ServiceState
from statistics_manager_service.storage.upsert import upsert_rows

KEY = ("period", "zone", "tariff_type", "power_band", "pv")
# service_state rows `peer_groups:YYYY-MM`: which days a month's last computation compared, and when,
# also for a month where no household counted (no group rows).
STATE_PREFIX = "peer_groups:"


@dataclasses.dataclass(frozen=True)
class ComputedPeriod:
    """A month's last computation: the local days it compared and when it ran (epoch s)."""

    period: str
    first_day: str
    last_day: str
    complete: bool
    computed_at: int


@dataclasses.dataclass(frozen=True)
class StoredGroup:
    """A stored group with the days it compares and when it was computed."""

    group: PeerGroup
    first_day: str
    last_day: str
    complete: bool
    computed_at: int


def household_batch(session: Session, after_user_id: str, limit: int) -> list[Household]:
    """Return up to `limit` households after `after_user_id`, in user order."""
    statement = (
        sa.select(Household).where(Household.user_id > after_user_id).order_by(Household.user_id).limit(limit)
    )
    return list(session.scalars(statement))


def lock_period(session: Session, period: str) -> None:
    """Hold a period's groups exclusively until the transaction ends (PostgreSQL): two workers
    replacing one period's groups write one after the other. SQLite has one writer anyway."""
    hold(session, PEER_PERIOD_NAMESPACE, period)


def replace_period_groups(
    session: Session,
    period: str,
    groups: Sequence[PeerGroup],
    first_day: str,
    last_day: str,
    complete: bool,
    computed_at: int,
) -> None:
    """Make `groups` the period's groups: upsert them, delete the period's other groups and record
    the computation."""
    rows = [
        {
            "period": period,
            "zone": group.zone,
            "tariff_type": group.tariff_type,
            "power_band": group.power_band,
            "pv": group.pv,
            "households": group.households,
            "percentiles_kwh": None
            if group.percentiles_kwh is None
            else orjson.dumps(list(group.percentiles_kwh)).decode(),
            "median_kwh": group.median_kwh,
            "efficient_kwh": group.efficient_kwh,
            "first_day": first_day,
            "last_day": last_day,
            "complete": complete,
            "computed_at": computed_at,
        }
        for group in groups
    ]
    upsert_rows(session, PeerGroupRow, rows, KEY)
    record = {"first_day": first_day, "last_day": last_day, "complete": complete, "computed_at": computed_at}
    state = {"key": STATE_PREFIX + period, "value": orjson.dumps(record).decode(), "updated_at": computed_at}
    upsert_rows(session, ServiceState, [state], ["key"])
    stale = sa.delete(PeerGroupRow).where(PeerGroupRow.period == period)
    if rows:
        kept = sa.tuple_(*(PeerGroupRow.__table__.c[name] for name in KEY[1:]))
        stale = stale.where(kept.not_in([(g.zone, g.tariff_type, g.power_band, g.pv) for g in groups]))
    session.execute(stale)


def _stored(row: PeerGroupRow) -> StoredGroup:
    percentiles = None if row.percentiles_kwh is None else tuple(orjson.loads(row.percentiles_kwh))
    group = PeerGroup(
        row.zone,
        row.tariff_type,
        row.power_band,
        row.pv,
        row.households,
        percentiles,
        row.median_kwh,
        row.efficient_kwh,
    )
    return StoredGroup(group, row.first_day, row.last_day, row.complete, row.computed_at)


def load_period_groups(session: Session, period: str) -> list[StoredGroup]:
    """Return the period's stored groups in key order."""
    statement = (
        sa.select(PeerGroupRow)
        .where(PeerGroupRow.period == period)
        .order_by(*(PeerGroupRow.__table__.c[name] for name in KEY))
    )
    return [_stored(row) for row in session.scalars(statement)]


def load_computed_period(session: Session, period: str) -> ComputedPeriod | None:
    """Return the month's last computation (None: never computed)."""
    state = session.get(ServiceState, STATE_PREFIX + period)
    if state is None:
        return None
    value = orjson.loads(state.value)
    return ComputedPeriod(
        period, value["first_day"], value["last_day"], bool(value["complete"]), int(value["computed_at"])
    )


def latest_period(session: Session) -> str | None:
    """Return the newest computed month (None: none yet)."""
    statement = sa.select(sa.func.max(ServiceState.key)).where(ServiceState.key.startswith(STATE_PREFIX))
    value = session.execute(statement).scalar_one()
    return None if value is None else str(value).removeprefix(STATE_PREFIX)
