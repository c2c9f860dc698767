"""PostgreSQL advisory locks held until the caller's transaction ends. SQLite has a single writer,
so there is nothing to lock there: taking a lock always succeeds.

A job that one worker at a time may run has a key of its own; one of many things (a grid zone, a
household, a month) is locked by a namespace and the CRC-32 of its name. Every key and namespace
the service uses is declared here, so that no two collide.
"""

from __future__ import annotations

import zlib

import sqlalchemy as sa
from sqlalchemy.orm import Session

# Jobs one worker at a time runs: the outbox relay ("relay") and the alert job ("alerts").
RELAY_LOCK_KEY = 0x72656C6179
ALERT_JOB_LOCK_KEY = 0x616C65727473
# Namespaces: a grid zone's signals, a household's producer requests, a month's peer groups.
ZONE_NAMESPACE = 0x534D
REQUEST_NAMESPACE = 0x5251
PEER_PERIOD_NAMESPACE = 0x5047


def _on_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def try_lock_job(session: Session, key: int) -> bool:
    """Take a job's lock unless another transaction holds it; tell whether it was taken."""
    if not _on_postgresql(session):
        return True
    return bool(session.execute(sa.select(sa.func.pg_try_advisory_xact_lock(key))).scalar_one())


def name_key(name: str) -> int:
    """The second key of a named thing within a namespace (a signed 32-bit integer)."""
    return zlib.crc32(name.encode()) - 2**31


def hold(session: Session, namespace: int, name: str, shared: bool = False) -> None:
    """Wait for and hold a named thing's lock, exclusively or `shared` with other shared holders."""
    if not _on_postgresql(session):
        return
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    session.execute(
        sa.text(f"SELECT {function}(:namespace, :key)"), {"namespace": namespace, "key": name_key(name)}
    )
