"""Raw meter readings: idempotent storage and the windows the aggregation engine reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from statistics_manager_service.storage.tables import Household, RawReading
from statistics_manager_service.storage.upsert import upsert_frame
from statistics_manager_service.storage.windows import read_windows

READING_VALUE_COLUMNS = [
    "energy_imported_wh",
    "energy_exported_wh",
    "energy_generated_wh",
    "power_imported_w",
    "power_exported_w",
    "voltage_v",
]
READING_COLUMNS = ["user_id", "source", "ts", *READING_VALUE_COLUMNS]


def upsert_readings(session: Session, readings: pd.DataFrame) -> int:
    """Store readings keyed by (user, source, ts); a conflict keeps the larger value of each field.

    Keeping the larger value makes the stored table independent of delivery order and of
    duplicates. Returns the number of distinct readings written.
    """
    if readings.empty:
        return 0
    merged = readings[READING_COLUMNS].groupby(["user_id", "source", "ts"], as_index=False, sort=True).max()
    upsert_frame(session, RawReading, merged, ["user_id", "source", "ts"], merge="max", appends=True)
    return len(merged)


def load_reading_windows(session: Session, windows: pd.DataFrame) -> pd.DataFrame:
    """Load the readings of each (user_id, source, start_s, end_s) window, end excluded."""
    frame = read_windows(
        session,
        RawReading.__table__,
        READING_COLUMNS,
        windows,
        ["user_id", "source"],
        "ts",
    )
    frame["ts"] = frame["ts"].astype("int64")
    for column in READING_VALUE_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame


def _newest(session: Session, user_ids: Sequence[str], column: str, values: Sequence[str]) -> list[Any]:
    """Rows (user_id, ts, *values) of each household's newest reading that has `column`.

    One statement for all users; each user's maximum is an index lookup, not a scan.
    """
    inner = sa.alias(RawReading.__table__, "newer")
    newest_ts = (
        sa.select(sa.func.max(inner.c.ts))
        .where(
            inner.c.user_id == Household.user_id,
            inner.c.source == Household.statistics_source,
            inner.c[column].is_not(None),
        )
        .scalar_subquery()
    )
    statement = (
        sa.select(Household.user_id, RawReading.ts, *(getattr(RawReading, v) for v in values))
        .join(
            RawReading,
            sa.and_(
                RawReading.user_id == Household.user_id,
                RawReading.source == Household.statistics_source,
                RawReading.ts == newest_ts,
            ),
        )
        .where(Household.user_id.in_(sorted(set(user_ids))))
    )
    return list(session.execute(statement).all())


def latest_readings(session: Session, user_ids: Sequence[str], column: str) -> pd.DataFrame:
    """Return each household's newest value of `column` (user_id, ts, value)."""
    frame = pd.DataFrame(_newest(session, user_ids, column, [column]), columns=["user_id", "ts", "value"])
    frame["ts"] = frame["ts"].astype("int64")
    frame["value"] = frame["value"].astype("float64")
    return frame


def latest_registers(session: Session, user_ids: Sequence[str]) -> pd.DataFrame:
    """Return each household's newest energy registers (Wh) and their time."""
    columns = ["energy_imported_wh", "energy_exported_wh", "energy_generated_wh"]
    frame = pd.DataFrame(
        _newest(session, user_ids, "energy_imported_wh", columns), columns=["user_id", "ts", *columns]
    )
    frame["ts"] = frame["ts"].astype("int64")
    for column in columns:
        frame[column] = frame[column].astype("float64")
    return frame
