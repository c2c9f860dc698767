"""Idempotent bulk writes by natural key, on PostgreSQL and SQLite alike."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session

from statistics_manager_service.storage import pg_copy
from statistics_manager_service.storage.tables import Base

Merge = Literal["replace", "max", "ignore"]

# From this many rows a PostgreSQL upsert goes through COPY and a temporary table; below it the
# temporary table's creation costs more than the row-by-row executemany it saves.
COPY_MIN_ROWS = 20


def dialect_insert(session: Session, table: sa.Table) -> Any:
    """An INSERT of the session's database that can take ON CONFLICT clauses."""
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


def _table(model: type[Base] | sa.Table) -> sa.Table:
    return model if isinstance(model, sa.Table) else cast(sa.Table, model.__table__)


def _on_conflict(
    session: Session,
    statement: Any,
    table: sa.Table,
    keys: list[str],
    update_columns: list[str],
    merge: Merge,
) -> Any:
    if merge == "ignore" or not update_columns:
        return statement.on_conflict_do_nothing(index_elements=keys)
    if merge == "max":
        return statement.on_conflict_do_update(
            index_elements=keys,
            set_={c: _greatest(session, table.c[c], statement.excluded[c]) for c in update_columns},
        )
    return statement.on_conflict_do_update(
        index_elements=keys, set_={c: statement.excluded[c] for c in update_columns}
    )


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
    table = _table(model)
    keys = list(key_columns)
    if len(rows) >= COPY_MIN_ROWS and pg_copy.supported(session):
        frame = pd.DataFrame.from_records(list(rows))
        # Repeated keys are applied one after the other by executemany: keep that path for them.
        if not frame.duplicated(keys).any() and _copy_upsert(session, table, frame, keys, merge):
            return
    _executemany(session, table, rows, keys, merge)


def _executemany(
    session: Session, table: sa.Table, rows: Sequence[Mapping[str, Any]], keys: list[str], merge: Merge
) -> None:
    update_columns = [c for c in rows[0] if c not in keys]
    statement = _on_conflict(session, dialect_insert(session, table), table, keys, update_columns, merge)
    session.execute(statement, list(rows))


def _copy_upsert(
    session: Session, table: sa.Table, frame: pd.DataFrame, keys: list[str], merge: Merge
) -> bool:
    """COPY the frame into a temporary table and upsert from it in one statement (PostgreSQL)."""
    temp = pg_copy.copy_to_temp(session, f"_upsert_{table.name}", frame)
    if temp is None:
        return False
    names = list(temp.kinds)
    statement = postgresql.insert(table).from_select(names, sa.select(*temp.values()))
    update_columns = [name for name in names if name not in keys]
    session.execute(_on_conflict(session, statement, table, keys, update_columns, merge))
    pg_copy.drop_temp(session, temp)
    return True


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Turn a frame into row dicts with NaN as NULL and plain Python numbers."""
    clean = frame.astype(object).where(frame.notna(), None)
    return clean.to_dict("records")  # type: ignore[return-value]


def _newest_stored(session: Session, table: sa.Table, frame: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Per row, the largest stored value of the last key column among the rows sharing its other keys.

    One statement: each group's maximum is one index lookup. The smallest int64 where the group
    has no row.
    """
    prefix, last = keys[:-1], keys[-1]
    # Groups numbered in order of first appearance, as `drop_duplicates` lists them.
    codes = frame.groupby(prefix, sort=False).ngroup().to_numpy()
    groups = frame[prefix].drop_duplicates()
    arrays = [
        sa.cast(
            sa.bindparam(
                f"group_{name}",
                groups[name].tolist(),
                type_=postgresql.ARRAY(table.c[name].type),
            ),
            postgresql.ARRAY(table.c[name].type),
        )
        for name in prefix
    ]
    group = (
        sa.func.unnest(*arrays).table_valued(*prefix, with_ordinality="position").render_derived(name="grp")
    )
    newest = (
        sa.select(sa.func.max(table.c[last]))
        .where(*(table.c[name] == group.c[name] for name in prefix))
        .scalar_subquery()
    )
    stored = np.full(len(groups), np.iinfo(np.int64).min, dtype=np.int64)
    for position, value in session.execute(sa.select(group.c.position, newest).select_from(group)):
        if value is not None:
            stored[int(position) - 1] = int(value)
    return stored[codes]


def _with_defaults(table: sa.Table, frame: pd.DataFrame) -> pd.DataFrame | None:
    """The frame plus the columns it lacks that have a constant default, as an INSERT would fill
    them; None when a lacking column's default is computed."""
    defaults: dict[str, Any] = {}
    for column in table.columns:
        if column.name in frame.columns or column.default is None:
            continue
        if not column.default.is_scalar:
            return None
        defaults[column.name] = column.default.arg  # type: ignore[attr-defined]
    return frame.assign(**defaults) if defaults else frame


def _copy_appended(session: Session, table: sa.Table, frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """COPY the rows past their group's newest stored key straight into the table; return the rest.

    No such row can conflict unless a concurrent transaction stores it first; then the COPY fails
    on the unique key, is rolled back, and every row is returned to be upserted.
    """
    if len(keys) < 2 or frame[keys[-1]].dtype.kind not in "iu":
        return frame
    appended = frame[keys[-1]].to_numpy(dtype=np.int64) > _newest_stored(session, table, frame, keys)
    if not appended.any():
        return frame
    rows = _with_defaults(table, frame[appended])
    if rows is None or pg_copy.copy_into(session, table, rows) is not True:
        return frame
    return frame[~appended]


def upsert_frame(
    session: Session,
    model: type[Base] | sa.Table,
    frame: pd.DataFrame,
    key_columns: Iterable[str],
    merge: Merge = "replace",
    appends: bool = False,
) -> None:
    """`upsert_rows` for the rows of a frame (NaN is NULL); keys must be unique within the frame.

    On PostgreSQL the frame is COPied into a temporary table and upserted with one
    INSERT … SELECT … ON CONFLICT: an order of magnitude faster than executemany, which
    psycopg2 runs row by row for an upsert. With `appends` (the last key column is a time that
    mostly grows within the other key columns), the rows past their group's newest stored time
    are first COPied straight into the table, which costs PostgreSQL about half as much as the
    upsert; the stored rows are the same.
    """
    if frame.empty:
        return
    table = _table(model)
    keys = list(key_columns)
    if appends and len(frame) >= COPY_MIN_ROWS and pg_copy.supported(session):
        frame = _copy_appended(session, table, frame, keys)
        if frame.empty:
            return
    copied = (
        len(frame) >= COPY_MIN_ROWS
        and pg_copy.supported(session)
        and _copy_upsert(session, table, frame, keys, merge)
    )
    if not copied:
        _executemany(session, table, frame_records(frame), keys, merge)


def delete_oldest(
    session: Session,
    key: InstrumentedAttribute[Any],
    age: InstrumentedAttribute[Any],
    before: int,
    limit: int,
) -> int:
    """Delete up to `limit` rows of `key`'s table whose `age` column is below `before`, oldest first
    (a bounded batch, so that pruning never holds one long transaction); return how many."""
    oldest = sa.select(key).where(age < before).order_by(age).limit(limit)
    result = session.execute(
        sa.delete(key.class_)
        .where(key.in_(oldest.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
