"""Stored statistics per household and bucket (15 minutes up to a local year)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from statistics_manager_service.storage.tables import StatisticsPeriod
from statistics_manager_service.storage.upsert import upsert_rows
from statistics_manager_service.storage.windows import read_windows

PERIOD_KEY = ["user_id", "granularity", "period_start"]
PERIOD_VALUE_COLUMNS = [
    column.name
    for column in StatisticsPeriod.__table__.columns
    if column.name not in (*PERIOD_KEY, "updated_at")
]


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    clean = frame.astype(object).where(frame.notna(), None)
    return clean.to_dict("records")  # type: ignore[return-value]


def upsert_periods(session: Session, granularity: str, periods: pd.DataFrame) -> int:
    """Write the statistics of `periods` (engine output columns) at `granularity`."""
    if periods.empty:
        return 0
    frame = periods.rename(columns={"bucket_start": "period_start"})
    frame = frame[
        ["user_id", "period_start", *[c for c in PERIOD_VALUE_COLUMNS if c in frame.columns]]
    ].copy()
    frame.insert(1, "granularity", granularity)
    frame["period_start"] = frame["period_start"].astype("int64")
    frame["reset_detected"] = frame["reset_detected"].astype(bool)
    frame["updated_at"] = int(time.time())
    upsert_rows(session, StatisticsPeriod, _records(frame), PERIOD_KEY)
    return len(frame)


def load_periods(
    session: Session,
    user_ids: Sequence[str],
    granularity: str,
    start_s: int,
    end_s: int,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Return the periods of `user_ids` at `granularity` starting in [start_s, end_s), in order.

    One indexed range read for all users.
    """
    wanted = ["user_id", "period_start", *(columns or [*PERIOD_VALUE_COLUMNS, "updated_at"])]
    statement = (
        sa.select(*(StatisticsPeriod.__table__.c[c] for c in wanted))
        .where(
            StatisticsPeriod.user_id.in_(sorted(set(user_ids))),
            StatisticsPeriod.granularity == granularity,
            StatisticsPeriod.period_start >= start_s,
            StatisticsPeriod.period_start < end_s,
        )
        .order_by(StatisticsPeriod.user_id, StatisticsPeriod.period_start)
    )
    frame = pd.DataFrame(session.execute(statement).all(), columns=wanted)
    frame["period_start"] = frame["period_start"].astype("int64")
    return frame


def load_period_windows(session: Session, windows: pd.DataFrame, granularity: str) -> pd.DataFrame:
    """Load the periods at `granularity` starting inside each (user_id, start_s, end_s) window."""
    columns = ["user_id", "period_start", *PERIOD_VALUE_COLUMNS]
    frame = read_windows(
        session,
        StatisticsPeriod.__table__,
        columns,
        windows,
        ["user_id"],
        "period_start",
        StatisticsPeriod.granularity == granularity,
    )
    frame["period_start"] = frame["period_start"].astype("int64")
    for column in PERIOD_VALUE_COLUMNS:
        if column != "reset_detected":
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame["reset_detected"] = frame["reset_detected"].astype(bool)
    return frame


def delete_periods(
    session: Session, user_ids: Sequence[str], granularity: str, start_s: int, end_s: int
) -> None:
    """Delete stored periods (used when a household's statistics are rebuilt from scratch)."""
    session.execute(
        sa.delete(StatisticsPeriod).where(
            StatisticsPeriod.user_id.in_(sorted(set(user_ids))),
            StatisticsPeriod.granularity == granularity,
            StatisticsPeriod.period_start >= start_s,
            StatisticsPeriod.period_start < end_s,
        )
    )
