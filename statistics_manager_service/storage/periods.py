"""Stored statistics per household and bucket (15 minutes up to a local year)."""

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
APPENDING_GRANULARITIES = ("15_mins", "hourly")
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
    # Live readings add 15-minute and hourly rows past the stored ones; the coarser levels mostly
    # rewrite their newest period, where the lookup of the newest stored row would be wasted.
    appends = granularity in APPENDING_GRANULARITIES
    upsert_frame(session, StatisticsPeriod, frame, PERIOD_KEY, appends=appends)
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
    return _typed(frame)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Give period rows the dtypes the engine works with (as read back from either database)."""
    columns: dict[str, Any] = {}
    for name in frame.columns:
        series = frame[name]
        if name == "period_start":
            columns[name] = series.astype("int64")
        elif name == "reset_detected":
            columns[name] = series.astype(bool)
        elif name in PERIOD_VALUE_COLUMNS and series.dtype != np.float64:
            columns[name] = pd.to_numeric(series, errors="coerce").astype("float64")
        else:
            columns[name] = series
    # Built at once: setting 20-odd columns one by one costs more than the conversions.
    return pd.DataFrame(columns, index=frame.index)


def _stored_form(periods: pd.DataFrame) -> pd.DataFrame | None:
    """Periods as `load_period_windows` reads them back once upserted; None without every column."""
    frame = periods.rename(columns={"bucket_start": "period_start"})
    if not {"user_id", "period_start", *PERIOD_VALUE_COLUMNS} <= set(frame.columns):
        return None
    frame = frame[["user_id", "period_start", *PERIOD_VALUE_COLUMNS]].copy()
    return _typed(frame)


def _outside(windows: pd.DataFrame, holes: pd.DataFrame) -> pd.DataFrame:
    """The parts of each user's window before and after that user's hole (holes: one per user)."""
    merged = windows[["user_id", "start_s", "end_s"]].merge(
        holes[["user_id", "start_s", "end_s"]], on="user_id", how="left", suffixes=("", "_hole")
    )
    start, end = merged["start_s"].to_numpy(np.int64), merged["end_s"].to_numpy(np.int64)
    has_hole = merged["start_s_hole"].notna().to_numpy()
    hole_start = merged["start_s_hole"].fillna(0).to_numpy(np.int64)
    hole_end = merged["end_s_hole"].fillna(0).to_numpy(np.int64)
    before = pd.DataFrame(
        {
            "user_id": merged["user_id"],
            "start_s": start,
            "end_s": np.where(has_hole, np.minimum(end, hole_start), end),
        }
    )
    after = pd.DataFrame(
        {
            "user_id": merged["user_id"],
            "start_s": np.where(has_hole, np.maximum(start, hole_end), end),
            "end_s": end,
        }
    )
    parts = pd.concat([before, after], ignore_index=True)
    return parts[parts["end_s"] > parts["start_s"]].reset_index(drop=True)


def load_period_windows_reusing(
    session: Session,
    windows: pd.DataFrame,
    granularity: str,
    written_windows: pd.DataFrame,
    written: pd.DataFrame,
) -> pd.DataFrame:
    """`load_period_windows`, but the rows inside `written_windows` are taken from `written`.

    `written` must be every row the caller's transaction has just upserted at `granularity` inside
    `written_windows` (one window per user), so that the database holds no other row there: the
    rows are not read back, only those around them.
    """
    rows = _stored_form(written)
    if rows is None or written_windows["user_id"].duplicated().any():
        return load_period_windows(session, windows, granularity)
    bounds = rows.merge(windows[["user_id", "start_s", "end_s"]], on="user_id", how="inner")
    inside = (bounds["period_start"] >= bounds["start_s"]) & (bounds["period_start"] < bounds["end_s"])
    rows = bounds.loc[inside, list(rows.columns)]
    around = _outside(windows, written_windows)
    if around.empty:
        return rows.reset_index(drop=True)
    stored = load_period_windows(session, around, granularity)
    if stored.empty:
        return rows.reset_index(drop=True)
    return pd.concat([stored, rows], ignore_index=True)


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
