"""Households, their device ids and erasure; every function takes the caller's session."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any, cast

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from statistics_manager_service.storage.tables import (
    AlertProgress,
    AlertSent,
    ConsumptionCurve,
    ContractVersion,
    DeviceMapping,
    ErasedUser,
    Household,
    OutboxEvent,
    ProcessedEvent,
    ReadingDay,
    StatisticsPeriod,
)
from statistics_manager_service.storage.upsert import delete_oldest, upsert_rows

HOUSEHOLD_COLUMNS = ["user_id", "timezone", "tariff_type", "contracted_power_kva", "zone"]


def upsert_household(session: Session, user_id: str, fields: Mapping[str, Any]) -> None:
    """Create the household or update the fields given (None values leave a field as it is)."""
    now = int(time.time())
    known = {key: value for key, value in fields.items() if value is not None}
    existing = session.get(Household, user_id)
    if existing is None:
        session.add(
            Household(
                user_id=user_id,
                tariff_type=known.get("tariff_type", "simple"),
                contracted_power_kva=known.get("contracted_power_kva"),
                zone=known.get("zone", "PT"),
                postal_code=known.get("postal_code"),
                timezone=known.get("timezone"),
                meter_id=known.get("meter_id"),
                created_at=now,
                updated_at=now,
            )
        )
        session.flush()
        return
    for key, value in known.items():
        setattr(existing, key, value)
    existing.updated_at = now


def ensure_households(session: Session, user_ids: Collection[str]) -> None:
    """Create default households for users first seen through their readings."""
    if not user_ids:
        return
    now = int(time.time())
    rows = [
        {"user_id": user_id, "tariff_type": "simple", "zone": "PT", "created_at": now, "updated_at": now}
        for user_id in sorted(user_ids)
    ]
    upsert_rows(session, Household, rows, ["user_id"], merge="ignore")


def map_device(session: Session, device_id: str, user_id: str, kind: str) -> str | None:
    """Point a dongle API key or meter id at its user; return the user it pointed at before."""
    previous = session.scalar(sa.select(DeviceMapping.user_id).where(DeviceMapping.device_id == device_id))
    row = {"device_id": device_id, "user_id": user_id, "kind": kind, "updated_at": int(time.time())}
    upsert_rows(session, DeviceMapping, [row], ["device_id"])
    return None if previous is None else str(previous)


def resolve_devices(session: Session, device_ids: Collection[str]) -> dict[str, str]:
    """Map device ids to user ids (unknown ids are absent)."""
    if not device_ids:
        return {}
    rows = session.execute(
        sa.select(DeviceMapping.device_id, DeviceMapping.user_id).where(
            DeviceMapping.device_id.in_(sorted(device_ids))
        )
    )
    return {str(device_id): str(user_id) for device_id, user_id in rows}


def erased_user_ids(session: Session, user_ids: Collection[str]) -> set[str]:
    """Return which of `user_ids` were erased."""
    if not user_ids:
        return set()
    rows = session.execute(sa.select(ErasedUser.user_id).where(ErasedUser.user_id.in_(sorted(user_ids))))
    return {user_id for (user_id,) in rows}


def known_user_ids(session: Session, user_ids: Collection[str]) -> set[str]:
    """Return which of `user_ids` are households this service knows."""
    if not user_ids:
        return set()
    rows = session.execute(sa.select(Household.user_id).where(Household.user_id.in_(sorted(user_ids))))
    return {user_id for (user_id,) in rows}


def erase_user(session: Session, user_id: str) -> None:
    """Delete every row about the user and leave a tombstone."""
    for table, column in (
        (ReadingDay, ReadingDay.user_id),
        (StatisticsPeriod, StatisticsPeriod.user_id),
        (ConsumptionCurve, ConsumptionCurve.user_id),
        (ContractVersion, ContractVersion.user_id),
        (DeviceMapping, DeviceMapping.user_id),
        (OutboxEvent, OutboxEvent.aggregateid),
        (AlertSent, AlertSent.user_id),
        (AlertProgress, AlertProgress.user_id),
        (Household, Household.user_id),
    ):
        session.execute(sa.delete(table).where(column == user_id))
    upsert_rows(
        session,
        ErasedUser,
        [{"user_id": user_id, "erased_at": int(time.time())}],
        ["user_id"],
        merge="ignore",
    )


def load_households(
    session: Session, user_ids: Iterable[str], default_timezone: str, lock: bool = False
) -> pd.DataFrame:
    """Return the households' tariff, power, zone and time zone as a frame.

    With `lock`, the rows are locked in user order (PostgreSQL) so that two workers never
    recompute the same household at once, and never deadlock doing so.
    """
    ids = sorted(set(user_ids))
    statement = (
        sa.select(
            Household.user_id,
            Household.timezone,
            Household.tariff_type,
            Household.contracted_power_kva,
            Household.zone,
        )
        .where(Household.user_id.in_(ids))
        .order_by(Household.user_id)
    )
    if lock and session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    frame = pd.DataFrame(session.execute(statement).all(), columns=HOUSEHOLD_COLUMNS)
    frame["timezone"] = frame["timezone"].fillna(default_timezone)
    frame["contracted_power_kva"] = frame["contracted_power_kva"].astype("float64")
    return frame


def households_in_zone(session: Session, zone: str, tariff_type: str | None = None) -> list[str]:
    """Return the user ids of every household in a grid zone (with a tariff type), now or in any
    version of its contract."""
    current = sa.select(Household.user_id).where(Household.zone == zone)
    # A version that does not state its zone keeps an earlier one's: it may be this zone.
    versions = sa.select(ContractVersion.user_id).where(
        sa.or_(ContractVersion.zone == zone, ContractVersion.zone.is_(None))
    )
    if tariff_type is not None:
        current = current.where(Household.tariff_type == tariff_type)
        versions = versions.where(ContractVersion.tariff_type == tariff_type)
    rows = session.execute(sa.union(current, versions))
    return sorted(user_id for (user_id,) in rows)


def reading_history(session: Session, user_ids: Collection[str]) -> pd.DataFrame:
    """Return the first and last reading time of households with readings (user_id, first_s, last_s)."""
    statement = sa.select(Household.user_id, Household.first_reading_ts, Household.last_reading_ts).where(
        Household.user_id.in_(sorted(set(user_ids))),
        Household.first_reading_ts.is_not(None),
        Household.last_reading_ts.is_not(None),
    )
    return pd.DataFrame(session.execute(statement).all(), columns=["user_id", "first_s", "last_s"])


def newest_reading_ts(session: Session) -> int | None:
    """Return the epoch seconds of the newest reading any household's statistics include, or None."""
    newest: int | None = session.execute(sa.select(sa.func.max(Household.last_reading_ts))).scalar_one()
    return newest


def processed_event_ids(session: Session, event_ids: Collection[str]) -> set[str]:
    """Return which of `event_ids` were already processed."""
    if not event_ids:
        return set()
    ids = sorted(event_ids)
    if session.get_bind().dialect.name == "postgresql":
        # One array parameter: tens of thousands of ids cost no per-id bind parameters to render.
        wanted = ProcessedEvent.event_id == sa.any_(
            sa.bindparam("event_ids", ids, type_=postgresql.ARRAY(ProcessedEvent.event_id.type))
        )
    else:
        wanted = ProcessedEvent.event_id.in_(ids)
    return set(session.scalars(sa.select(ProcessedEvent.event_id).where(wanted)))


def record_processed(session: Session, events: Iterable[tuple[str, str]]) -> None:
    """Record (event id, type) pairs as processed, in the caller's transaction."""
    now = int(time.time())
    rows = [{"event_id": eid, "event_type": etype, "processed_at": now} for eid, etype in events]
    upsert_rows(session, ProcessedEvent, rows, ["event_id"], merge="ignore")


def prune_processed_events(session: Session, processed_before_s: int, limit: int) -> int:
    """Forget up to `limit` of the oldest event ids processed before `processed_before_s`; return how many."""
    return delete_oldest(
        session, ProcessedEvent.event_id, ProcessedEvent.processed_at, processed_before_s, limit
    )


def update_households(session: Session, updates: pd.DataFrame) -> None:
    """Set columns of many households (`user_id` and the columns to set); on PostgreSQL with one
    statement.

    The ORM would flush each household as an UPDATE of its own, one round trip each.
    """
    if updates.empty:
        return
    table = cast(sa.Table, Household.__table__)
    names = [name for name in updates.columns if name != "user_id"]
    values = {name: updates[name].tolist() for name in ["user_id", *names]}
    if session.get_bind().dialect.name != "postgresql":
        session.execute(
            sa.update(table)
            .where(table.c.user_id == sa.bindparam("household"))
            .values({name: sa.bindparam(f"new_{name}") for name in names}),
            [
                {
                    "household": row[0],
                    **{f"new_{name}": value for name, value in zip(names, row[1:], strict=True)},
                }
                for row in zip(*values.values(), strict=True)
            ],
        )
        return
    arrays = [
        sa.cast(
            sa.bindparam(f"new_{name}", values[name], type_=postgresql.ARRAY(table.c[name].type)),
            postgresql.ARRAY(table.c[name].type),
        )
        for name in ["user_id", *names]
    ]
    given = sa.func.unnest(*arrays).table_valued("user_id", *names).render_derived(name="given")
    session.execute(
        sa.update(table)
        .where(table.c.user_id == given.c.user_id)
        .values({name: given.c[name] for name in names})
    )
