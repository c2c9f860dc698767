"""Grid signals: dynamic energy prices and carbon intensity per zone."""

from __future__ import annotations

import time
from collections.abc import Collection

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from statistics_manager_service.storage.tables import CarbonIntensity, EnergyPrice
from statistics_manager_service.storage.upsert import upsert_rows

PRICE_COLUMNS = ["zone", "direction", "ts", "resolution_s", "value"]
INTENSITY_COLUMNS = ["zone", "kind", "ts", "resolution_s", "value"]
# The longest interval a signal value may hold for; bounds the look-back of range queries.
MAX_RESOLUTION_S = 86_400


def upsert_prices(session: Session, rows: list[dict[str, object]]) -> None:
    """Store price values; a later value for the same zone/direction/interval replaces the earlier."""
    now = int(time.time())
    upsert_rows(
        session, EnergyPrice, [{**row, "updated_at": now} for row in rows], ["zone", "direction", "ts"]
    )


def upsert_intensity(session: Session, rows: list[dict[str, object]]) -> None:
    """Store carbon intensity values; a later value for the same interval replaces the earlier."""
    now = int(time.time())
    upsert_rows(
        session, CarbonIntensity, [{**row, "updated_at": now} for row in rows], ["zone", "kind", "ts"]
    )


def load_prices(session: Session, zones: Collection[str], start_s: int, end_s: int) -> pd.DataFrame:
    """Return the price values of `zones` that may hold within [start_s, end_s)."""
    statement = sa.select(*(EnergyPrice.__table__.c[c] for c in PRICE_COLUMNS)).where(
        EnergyPrice.zone.in_(sorted(zones)),
        EnergyPrice.ts >= start_s - MAX_RESOLUTION_S,
        EnergyPrice.ts < end_s,
    )
    return _typed(pd.DataFrame(session.execute(statement).all(), columns=PRICE_COLUMNS))


def load_intensity(
    session: Session,
    zones: Collection[str],
    start_s: int,
    end_s: int,
    kinds: Collection[str] = ("actual", "forecast"),
) -> pd.DataFrame:
    """Return the carbon intensity values of `zones` that may hold within [start_s, end_s)."""
    statement = sa.select(*(CarbonIntensity.__table__.c[c] for c in INTENSITY_COLUMNS)).where(
        CarbonIntensity.zone.in_(sorted(zones)),
        CarbonIntensity.kind.in_(sorted(kinds)),
        CarbonIntensity.ts >= start_s - MAX_RESOLUTION_S,
        CarbonIntensity.ts < end_s,
    )
    return _typed(pd.DataFrame(session.execute(statement).all(), columns=INTENSITY_COLUMNS))


def load_intensity_with_updates(session: Session, zone: str, start_s: int, end_s: int) -> pd.DataFrame:
    """Return a zone's intensity values starting in [start_s, end_s) with their update times."""
    columns = [*INTENSITY_COLUMNS, "updated_at"]
    statement = (
        sa.select(*(CarbonIntensity.__table__.c[c] for c in columns))
        .where(CarbonIntensity.zone == zone, CarbonIntensity.ts >= start_s, CarbonIntensity.ts < end_s)
        .order_by(CarbonIntensity.ts)
    )
    return _typed(pd.DataFrame(session.execute(statement).all(), columns=columns))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame["ts"] = frame["ts"].astype("int64")
    frame["resolution_s"] = frame["resolution_s"].astype("int64")
    frame["value"] = frame["value"].astype("float64")
    return frame


def nearest_intensity_day(session: Session, zone: str, start_s: int, end_s: int) -> int | None:
    """Return the start of the newest intensity value of a zone before `start_s`, else of the
    oldest one from `end_s` on; None when the zone has none."""
    table = CarbonIntensity.__table__.c
    before = session.execute(
        sa.select(sa.func.max(table.ts)).where(table.zone == zone, table.ts < start_s)
    ).scalar_one_or_none()
    if before is not None:
        return int(before)
    after = session.execute(
        sa.select(sa.func.min(table.ts)).where(table.zone == zone, table.ts >= end_s)
    ).scalar_one_or_none()
    return None if after is None else int(after)
