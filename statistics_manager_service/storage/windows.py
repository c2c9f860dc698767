"""Range reads of many (user, window) pairs in one statement."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from statistics_manager_service.storage import pg_copy

# Windows per OR-ed statement: small enough for both planners, large enough to save round trips.
WINDOW_CHUNK = 200


def rows_of(frame: pd.DataFrame, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """Iterate a frame's rows as plain Python values (ints, strs), not NumPy scalars."""
    return zip(*(frame[column].tolist() for column in columns), strict=True)


def read_windows(
    session: Session,
    table: sa.Table | sa.FromClause,
    columns: Sequence[str],
    windows: pd.DataFrame,
    match_columns: Sequence[str],
    time_column: str,
    extra_condition: Any = None,
) -> pd.DataFrame:
    """Read rows of `table` whose `match_columns` equal a window's and whose `time_column`
    lies in its [start_s, end_s) range; one statement per chunk of windows."""
    if session.get_bind().dialect.name == "postgresql" and not windows.empty:
        return _read_windows_joined(
            session, table, columns, windows, match_columns, time_column, extra_condition
        )
    frames: list[pd.DataFrame] = []
    records = list(windows[[*match_columns, "start_s", "end_s"]].itertuples(index=False, name=None))
    for offset in range(0, len(records), WINDOW_CHUNK):
        chunk = records[offset : offset + WINDOW_CHUNK]
        condition = sa.or_(
            *(
                sa.and_(
                    *(table.c[name] == value for name, value in zip(match_columns, record[:-2], strict=True)),
                    table.c[time_column] >= int(record[-2]),
                    table.c[time_column] < int(record[-1]),
                )
                for record in chunk
            )
        )
        statement = sa.select(*(table.c[name] for name in columns)).where(condition)
        if extra_condition is not None:
            statement = statement.where(extra_condition)
        frames.append(pd.DataFrame(session.execute(statement).all(), columns=list(columns)))
    if not frames:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(frames, ignore_index=True)


def _read_windows_joined(
    session: Session,
    table: sa.Table | sa.FromClause,
    columns: Sequence[str],
    windows: pd.DataFrame,
    match_columns: Sequence[str],
    time_column: str,
    extra_condition: Any = None,
) -> pd.DataFrame:
    """`read_windows` on PostgreSQL: the windows travel as arrays and are joined to the table.

    One statement of one shape whatever the number of windows: compiled once, planned as
    an index range scan per window.
    """
    names = [*match_columns, "start_s", "end_s"]
    windows = _disjoint(windows[names], list(match_columns))
    arrays = [
        sa.cast(
            sa.bindparam(
                f"window_{name}", windows[name].tolist(), type_=postgresql.ARRAY(table.c[name].type)
            ),
            postgresql.ARRAY(table.c[name].type),
        )
        for name in match_columns
    ] + [
        sa.cast(
            sa.bindparam(
                f"window_{name}",
                windows[name].astype("int64").tolist(),
                type_=postgresql.ARRAY(sa.BigInteger),
            ),
            postgresql.ARRAY(sa.BigInteger),
        )
        for name in ("start_s", "end_s")
    ]
    window = (
        sa.func.unnest(*arrays).table_valued(*names, with_ordinality="position").render_derived(name="window")
    )
    condition = sa.and_(
        *(table.c[name] == window.c[name] for name in match_columns),
        table.c[time_column] >= window.c.start_s,
        table.c[time_column] < window.c.end_s,
    )
    joined = table.join(window, condition)
    frame = _copy_windows(session, table, joined, columns, windows, match_columns, extra_condition)
    if frame is not None:
        return frame
    statement = sa.select(*(table.c[name] for name in columns)).select_from(joined)
    if extra_condition is not None:
        statement = statement.where(extra_condition)
    return pd.DataFrame(session.execute(statement).all(), columns=list(columns))


def _copy_windows(
    session: Session,
    table: sa.Table | sa.FromClause,
    joined: sa.Join,
    columns: Sequence[str],
    windows: pd.DataFrame,
    match_columns: Sequence[str],
    extra_condition: Any,
) -> pd.DataFrame | None:
    """Read the joined rows through a binary COPY: each row's window by position, numbers as
    NumPy decodes them. None when a column is of a type this path does not decode."""
    values = [name for name in columns if name not in match_columns]
    kinds = [pg_copy.read_kind(table.c[name].type) for name in values]
    if None in kinds:
        return None
    nan: sa.ColumnElement[float] = sa.literal_column("'NaN'::double precision")
    selected = [
        sa.func.coalesce(table.c[name], nan) if kind == "float" else table.c[name]
        for name, kind in zip(values, kinds, strict=True)
    ]
    position = joined.right.c.position
    statement = sa.select(sa.cast(position, sa.BigInteger), *selected).select_from(joined)
    if extra_condition is not None:
        statement = statement.where(extra_condition)
    session.flush()  # as any statement through the session would
    decoded = pg_copy.copy_out(session, statement, ["int", *kinds])  # type: ignore[list-item]
    if decoded is None:
        return None
    rows = decoded[0] - 1
    found = dict(zip(values, decoded[1:], strict=True))
    return pd.DataFrame(
        {name: windows[name].to_numpy()[rows] if name in match_columns else found[name] for name in columns}
    )


def _disjoint(windows: pd.DataFrame, match_columns: list[str]) -> pd.DataFrame:
    """Merge overlapping windows of the same match, so that a join returns each row once, as OR does."""
    windows = windows[windows["end_s"] > windows["start_s"]].sort_values([*match_columns, "start_s"])
    if len(windows) < 2:
        return windows
    if not windows.duplicated(match_columns).any():
        return windows.reset_index(drop=True)  # one window per match: nothing to merge
    same_match = (windows[match_columns] == windows[match_columns].shift()).all(axis=1)
    reach = windows.groupby(match_columns, sort=False)["end_s"].cummax()
    # A window starts a new run unless it overlaps or touches the run before it.
    starts_run = ~same_match | (
        windows["start_s"] > reach.groupby([windows[c] for c in match_columns]).shift()
    )
    run = starts_run.cumsum()
    merged = windows.groupby(run, sort=False).agg(
        **{name: (name, "first") for name in match_columns},
        start_s=("start_s", "min"),
        end_s=("end_s", "max"),
    )
    return merged.reset_index(drop=True)
