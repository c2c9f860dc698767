"""Idempotent bulk writes by natural key, on PostgreSQL and SQLite alike."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from statistics_manager_service.storage.tables import Base

Merge = Literal["replace", "max", "ignore"]


def _insert_for(session: Session, table: sa.Table) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"upsert is not implemented for {dialect}")


def _greatest(session: Session, current: Any, incoming: Any) -> Any:
    """The larger of two values, ignoring NULLs, on either database."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.greatest(current, incoming)
    return sa.func.max(sa.func.coalesce(current, incoming), sa.func.coalesce(incoming, current))


def upsert_rows(
    session: Session,
    model: type[Base] | sa.Table,
    rows: Sequence[Mapping[str, Any]],
    key_columns: Iterable[str],
    merge: Merge = "replace",
) -> None:
    """Insert `rows`; on a key conflict replace the other columns, keep the larger values, or skip.

    `max` makes the outcome independent of delivery order: the same rows in any order and
    any multiplicity leave the same table.
    """
    if not rows:
        return
    table = model if isinstance(model, sa.Table) else cast(sa.Table, model.__table__)
    keys = list(key_columns)
    update_columns = [c for c in rows[0] if c not in keys]
    statement = _insert_for(session, table)
    if merge == "ignore" or not update_columns:
        statement = statement.on_conflict_do_nothing(index_elements=keys)
    elif merge == "max":
        statement = statement.on_conflict_do_update(
            index_elements=keys,
            set_={c: _greatest(session, table.c[c], statement.excluded[c]) for c in update_columns},
        )
    else:
        statement = statement.on_conflict_do_update(
            index_elements=keys, set_={c: statement.excluded[c] for c in update_columns}
        )
    # The executemany form lets SQLAlchemy batch rows into multi-row VALUES and cache the statement.
    session.execute(statement, list(rows))
