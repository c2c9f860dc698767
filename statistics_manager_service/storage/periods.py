"""Stored statistics per household and local day."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from statistics_manager_service.storage.tables import StatisticsPeriod
from statistics_manager_service.storage.upsert import upsert_frame
from statistics_manager_service.storage.windows import read_windows

PERIOD_KEY = ["user_id", "granularity", "period_start"]
PERIOD_VALUE_COLUMNS = [
    column.name
    for column in StatisticsPeriod.__table__.columns
    if column.name not in (*PERIOD_KEY, "updated_at")
]


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
    # Batches of whole days mostly add days past the stored ones: those are COPied straight in.
    upsert_frame(session, StatisticsPeriod, frame, PERIOD_KEY, appends=True)
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


def load_period_windows(
    session: Session, windows: pd.DataFrame, granularity: str, with_update_times: bool = False
) -> pd.DataFrame:
    """Load the periods at `granularity` starting inside each (user_id, start_s, end_s) window."""
    columns = [
        "user_id",
        "period_start",
        *PERIOD_VALUE_COLUMNS,
        *(["updated_at"] if with_update_times else []),
    ]
    frame = read_windows(
        session,
        StatisticsPeriod.__table__,
        columns,
        windows,
        ["user_id"],
        "period_start",
        StatisticsPeriod.granularity == granularity,
    )
    return _typed(frame)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Give period rows the dtypes the engine works with (as read back from either database)."""
    columns: dict[str, Any] = {}
    for name in frame.columns:
        series = frame[name]
        if name in ("period_start", "updated_at"):
            columns[name] = series.astype("int64")
        elif name == "reset_detected":
            columns[name] = series.astype(bool)
        elif name in PERIOD_VALUE_COLUMNS and series.dtype != np.float64:
            columns[name] = pd.to_numeric(series, errors="coerce").astype("float64")
        else:
            columns[name] = series
    # Built at once: setting 20-odd columns one by one costs more than the conversions.
    return pd.DataFrame(columns, index=frame.index)


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
