"""The alert job's tables: which alerts were queued, and how far each household was checked.

Every function takes the caller's session and never commits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Sequence
from typing import cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from statistics_manager_service.storage.locks import ALERT_JOB_LOCK_KEY, try_lock_job
from statistics_manager_service.storage.tables import AlertProgress, AlertSent, Household
from statistics_manager_service.storage.upsert import delete_oldest, dialect_insert, upsert_rows


@dataclasses.dataclass(frozen=True)
class AlertKey:
    """What an alert is unique by: the household, its cause and the local day."""

    user_id: str
    cause: str
    day: dt.date


@dataclasses.dataclass(frozen=True)
class AlertCandidate:
    """A household with completed days the alert job has not checked yet."""

    user_id: str
    closed_through: int  # start (epoch s) of the household's newest local day, not yet complete
    checked_through: int | None  # `closed_through` when last checked; None: never


def lock_alert_job(session: Session) -> bool:
    """Take the alert job's lock for the caller's transaction; False when another worker holds it.

    SQLite has a single writer and a single worker: there is nothing to lock.
    """
    return try_lock_job(session, ALERT_JOB_LOCK_KEY)


def alert_candidates(session: Session, after_user_id: str, limit: int) -> list[AlertCandidate]:
    """The first `limit` households after `after_user_id` (in user order) whose newest completed
    day is past what the job has checked."""
    progress = AlertProgress.__table__
    statement = (
        sa.select(
            Household.user_id,
            Household.closed_through,
            progress.c.checked_through,
        )
        .select_from(Household)
        .outerjoin(progress, progress.c.user_id == Household.user_id)
        .where(
            Household.user_id > after_user_id,
            Household.closed_through.is_not(None),
            sa.or_(
                progress.c.checked_through.is_(None),
                progress.c.checked_through < Household.closed_through,
            ),
        )
        .order_by(Household.user_id)
        .limit(limit)
    )
    return [
        AlertCandidate(str(user_id), int(closed), None if checked is None else int(checked))
        for user_id, closed, checked in session.execute(statement)
    ]


def record_checked(session: Session, checked: Sequence[tuple[str, int]]) -> None:
    """Record each (user_id, closed_through) as checked."""
    now = int(time.time())
    upsert_rows(
        session,
        AlertProgress,
        [{"user_id": user_id, "checked_through": through, "updated_at": now} for user_id, through in checked],
        ["user_id"],
    )


def claim_alerts(session: Session, keys: Sequence[tuple[AlertKey, str]]) -> set[AlertKey]:
    """Record (key, event id) pairs not recorded yet; return the keys this call recorded.

    A key recorded by another transaction, committed or not, is not returned: on PostgreSQL the
    insert waits for that transaction and then skips the key, so of two workers only one ever
    claims it.
    """
    if not keys:
        return set()
    table = cast(sa.Table, AlertSent.__table__)
    now = int(time.time())
    statement = (
        dialect_insert(session, table)
        .values(
            [
                {
                    "user_id": key.user_id,
                    "cause": key.cause,
                    "day": key.day,
                    "event_id": event_id,
                    "created_at": now,
                }
                for key, event_id in keys
            ]
        )
        .on_conflict_do_nothing(index_elements=["user_id", "cause", "day"])
        .returning(table.c.user_id, table.c.cause, table.c.day)
    )
    return {AlertKey(str(user_id), str(cause), day) for user_id, cause, day in session.execute(statement)}


def sent_alerts(session: Session, user_ids: Sequence[str]) -> list[AlertKey]:
    """The alerts recorded for households, in user, cause and day order."""
    statement = (
        sa.select(AlertSent.user_id, AlertSent.cause, AlertSent.day)
        .where(AlertSent.user_id.in_(sorted(set(user_ids))))
        .order_by(AlertSent.user_id, AlertSent.cause, AlertSent.day)
    )
    return [AlertKey(str(user_id), str(cause), day) for user_id, cause, day in session.execute(statement)]


def prune_alerts_sent(session: Session, created_before_s: int, limit: int) -> int:
    """Forget up to `limit` of the oldest alerts recorded before `created_before_s`; return how many."""
    return delete_oldest(session, AlertSent.event_id, AlertSent.created_at, created_before_s, limit)
