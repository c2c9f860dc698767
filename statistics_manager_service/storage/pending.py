"""Zone-wide recomputations still to do, one row per zone, scope and window; every function takes
the caller's session."""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.orm import Session

from statistics_manager_service.storage.tables import PendingRecompute
from statistics_manager_service.storage.upsert import upsert_rows

KEY = ("zone", "scope", "start_s", "end_s")


def add_pending(
    session: Session, zone: str, scope: str, windows: list[tuple[int, int]], cause: str, after_user_id: str
) -> None:
    """Record windows of a zone to recompute for the households after `after_user_id`; a window
    already pending starts over, since its signal changed again."""
    now = int(time.time())
    upsert_rows(
        session,
        PendingRecompute,
        [
            {
                "zone": zone,
                "scope": scope,
                "start_s": start_s,
                "end_s": end_s,
                "cause": cause,
                "after_user_id": after_user_id,
                "created_at": now,
            }
            for start_s, end_s in windows
        ],
        KEY,
    )


def claim_pending(session: Session) -> PendingRecompute | None:
    """Return the oldest pending window, locked until the transaction ends; on PostgreSQL one
    that no other worker holds."""
    statement = sa.select(PendingRecompute).order_by(PendingRecompute.created_at, *KEY).limit(1)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    return session.scalars(statement).first()
