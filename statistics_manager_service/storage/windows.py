"""Range reads of many (user, window) pairs in one statement."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

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
