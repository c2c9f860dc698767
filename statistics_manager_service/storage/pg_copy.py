"""PostgreSQL bulk loading: a DataFrame COPied in binary format into a temporary table.

The binary format carries floats and integers exactly and costs no text formatting. Rows are
grouped by the byte lengths of their strings, so that each group is one fixed-layout NumPy record
array serialised in a single call. Float NaN travels as NaN: the caller turns it into NULL
(`NULLIF(column, 'NaN')`), as the executemany path turns NaN into None.
"""

from __future__ import annotations

import dataclasses
import io
import struct
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

Kind = Literal["float", "int", "bool", "text", "null"]

_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_SQL_TYPES: dict[str, str] = {
    "float": "double precision",
    "int": "bigint",
    "bool": "boolean",
    "text": "text",
}
_BINARY_TYPES: dict[str, str] = {"float": ">f8", "int": ">i8", "bool": "u1"}
# Rows per COPY statement: bounds the memory of the encoded buffer.
CHUNK_ROWS = 100_000
# More string-length layouts than this: the frame is not worth encoding group by group.
MAX_LAYOUTS = 256


class _TooManyLayouts(Exception):
    """The rows' strings vary in length too much for the grouped encoding."""


@dataclasses.dataclass(frozen=True)
class _Column:
    name: str
    kind: Kind
    values: np.ndarray  # float64, int64 or uint8; text: fixed-width bytes per row
    lengths: np.ndarray | None = None  # text: UTF-8 byte length per row, -1 for NULL


def supported(session: Session) -> bool:
    """Whether the session's database takes binary COPY through psycopg2."""
    dialect = session.get_bind().dialect
    return dialect.name == "postgresql" and dialect.driver == "psycopg2"


def _text_column(name: str, series: pd.Series) -> _Column | None:
    codes, uniques = pd.factorize(series)
    if len(uniques) == 0:
        return _Column(name, "null", np.empty(0))  # only NULLs: not copied, of the target's type
    if not all(isinstance(value, str) for value in uniques):
        return None
    encoded = [value.encode("utf-8") for value in uniques]
    width = max((len(value) for value in encoded), default=1) or 1
    # Index -1 (a NULL) picks the extra last element.
    lengths = np.array([len(value) for value in encoded] + [-1], dtype=np.int32)[codes]
    values = np.array([*encoded, b""], dtype=f"S{width}")[codes]
    return _Column(name, "text", values, lengths)


def _columns(frame: pd.DataFrame) -> list[_Column] | None:
    """The frame's columns as arrays to encode; None when a column has a type this path skips."""
    columns: list[_Column] = []
    for name in frame.columns:
        series = frame[name]
        kind = series.dtype.kind
        if kind == "f":
            columns.append(_Column(str(name), "float", series.to_numpy(dtype=np.float64)))
        elif kind in "iu":
            columns.append(_Column(str(name), "int", series.to_numpy(dtype=np.int64)))
        elif kind == "b":
            columns.append(_Column(str(name), "bool", series.to_numpy(dtype=np.uint8)))
        elif kind == "O":
            column = _text_column(str(name), series)
            if column is None:
                return None
            columns.append(column)
        else:
            return None
    return columns


def _layouts(columns: Sequence[_Column], rows: slice) -> Iterator[tuple[np.ndarray | None, tuple[int, ...]]]:
    """Yield (row indices or None for all, string lengths) per group of rows sharing a layout."""
    texts = [column.lengths[rows] for column in columns if column.lengths is not None]
    if not texts:
        yield None, ()
        return
    stacked = np.stack(texts, axis=1)
    if (stacked == stacked[0]).all():
        yield None, tuple(int(length) for length in stacked[0])
        return
    layouts, inverse = np.unique(stacked, axis=0, return_inverse=True)
    for index, layout in enumerate(layouts):
        yield np.flatnonzero(inverse.ravel() == index), tuple(int(length) for length in layout)


def _encode(
    columns: Sequence[_Column], rows: slice, picked: np.ndarray | None, layout: tuple[int, ...]
) -> bytes:
    """Encode one group of rows as binary COPY tuples."""
    fields: list[tuple[str, str]] = [("count", ">i2")]
    text_lengths = iter(layout)
    widths: dict[str, int] = {}
    for position, column in enumerate(columns):
        fields.append((f"l{position}", ">i4"))
        if column.kind == "text":
            widths[column.name] = next(text_lengths)
            if widths[column.name] > 0:
                fields.append((f"v{position}", f"S{widths[column.name]}"))
        else:
            fields.append((f"v{position}", _BINARY_TYPES[column.kind]))
    size = rows.stop - rows.start if picked is None else len(picked)
    records = np.empty(size, dtype=np.dtype(fields))
    records["count"] = len(columns)
    for position, column in enumerate(columns):
        values = column.values[rows]
        if picked is not None:
            values = values[picked]
        if column.kind == "text":
            records[f"l{position}"] = widths[column.name]
            if widths[column.name] > 0:
                records[f"v{position}"] = values
        else:
            records[f"l{position}"] = values.dtype.itemsize
            records[f"v{position}"] = values
    return records.tobytes()


def _buffers(columns: Sequence[_Column], row_count: int) -> Iterator[bytes]:
    """Yield one complete binary COPY stream per chunk of rows."""
    for start in range(0, row_count, CHUNK_ROWS):
        rows = slice(start, min(start + CHUNK_ROWS, row_count))
        layouts = list(_layouts(columns, rows))
        if len(layouts) > MAX_LAYOUTS:
            raise _TooManyLayouts
        parts = [_HEADER, *(_encode(columns, rows, picked, layout) for picked, layout in layouts), _TRAILER]
        yield b"".join(parts)


@dataclasses.dataclass(frozen=True)
class TempTable:
    """A temporary table holding a copied frame."""

    table: sa.TableClause
    kinds: dict[str, Kind]  # every column of the frame, in order

    def values(self) -> list[sa.ColumnElement[Any]]:
        """The frame's columns as stored: NaN as NULL, and NULL for the columns that were only NULL."""
        nan: sa.ColumnElement[float] = sa.literal_column("'NaN'::double precision")
        return [
            sa.null()
            if kind == "null"
            else sa.func.nullif(self.table.c[name], nan)
            if kind == "float"
            else self.table.c[name]
            for name, kind in self.kinds.items()
        ]


def copy_to_temp(session: Session, name: str, frame: pd.DataFrame) -> TempTable | None:
    """COPY `frame` into a new temporary table `name` (dropped at commit); None when it cannot.

    The table lives in the session's transaction; drop it with `drop_temp` once read.
    """
    described = _columns(frame)
    if described is None:
        return None
    columns = [column for column in described if column.kind != "null"]
    try:
        buffers = list(_buffers(columns, len(frame)))
    except _TooManyLayouts:
        return None
    quoted = [f'"{column.name}"' for column in columns]
    definition = ", ".join(f"{q} {_SQL_TYPES[c.kind]}" for q, c in zip(quoted, columns, strict=True))
    # Through the session, so that pending ORM changes are flushed first, as any statement would.
    session.execute(sa.text(f'CREATE TEMPORARY TABLE "{name}" ({definition}) ON COMMIT DROP'))
    connection: Any = session.connection().connection.dbapi_connection
    copy = f'COPY "{name}" ({", ".join(quoted)}) FROM STDIN WITH (FORMAT binary)'
    with connection.cursor() as cursor:  # psycopg2's
        for buffer in buffers:
            cursor.copy_expert(copy, io.BytesIO(buffer))
    table = sa.table(name, *(sa.column(column.name) for column in columns))
    return TempTable(table, {column.name: column.kind for column in described})


def drop_temp(session: Session, temp: TempTable) -> None:
    """Drop a table made by `copy_to_temp` (a transaction may load the same target again)."""
    session.execute(sa.text(f'DROP TABLE "{temp.table.name}"'))


# ---- reading ------------------------------------------------------------------------------------

_READ_TYPES: dict[str, str] = {"float": ">f8", "int": ">i8", "bool": "u1"}


def read_kind(column_type: sa.types.TypeEngine[Any]) -> Kind | None:
    """How a column of this type is read back in binary: float, int or bool; None for others."""
    if isinstance(column_type, sa.Float):
        return "float"
    if isinstance(column_type, sa.Integer):
        return "int"
    if isinstance(column_type, sa.Boolean):
        return "bool"
    return None


def copy_out(session: Session, statement: sa.Select[Any], kinds: Sequence[Kind]) -> list[np.ndarray] | None:
    """Run `statement` as a binary COPY and decode its columns with NumPy; None when it cannot.

    Every selected column must be of the given kind and never NULL (select floats through
    COALESCE(column, 'NaN')): then every row has one fixed layout. Anything else is detected
    in the stream and answered with None, for the caller to read the ordinary way.
    """
    connection: Any = session.connection().connection.dbapi_connection
    compiled = statement.compile(dialect=session.get_bind().dialect)
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for position, kind in enumerate(kinds):
        fields += [(f"l{position}", ">i4"), (f"v{position}", _READ_TYPES[kind])]
    layout = np.dtype(fields)
    buffer = io.BytesIO()
    with connection.cursor() as cursor:  # psycopg2's: COPY takes no parameters, so inline them safely
        query = cursor.mogrify(str(compiled), compiled.params).decode()
        cursor.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT binary)", buffer)
    data = buffer.getvalue()
    if not data.startswith(_HEADER) or not data.endswith(_TRAILER):
        return None
    body = data[len(_HEADER) : -len(_TRAILER)]
    if len(body) % layout.itemsize:
        return None
    records = np.frombuffer(body, dtype=layout)
    if (records["count"] != len(kinds)).any():
        return None
    columns = []
    for position, kind in enumerate(kinds):
        if (records[f"l{position}"] != np.dtype(_READ_TYPES[kind]).itemsize).any():
            return None  # a NULL, or another type than announced
        values = records[f"v{position}"]
        columns.append(
            values.astype(bool) if kind == "bool" else values.astype(values.dtype.newbyteorder("="))
        )
    return columns
