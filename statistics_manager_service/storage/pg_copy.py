"""PostgreSQL bulk loading: a DataFrame COPied in binary format, into a temporary table or a table.

The binary format carries floats and integers exactly and costs no text formatting. Rows are
grouped by the byte lengths of their fields (strings, NULLs), so that each group is one
fixed-layout NumPy record array serialised in a single call. Into a temporary table, float NaN
travels as NaN: the caller turns it into NULL (`NULLIF(column, 'NaN')`), as the executemany path
turns NaN into None. Into a table (`copy_into`), NaN is sent as NULL and every value in the
binary form of its column's type.
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

Kind = Literal["float", "int", "int4", "bool", "text", "null"]

_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_SQL_TYPES: dict[str, str] = {
    "float": "double precision",
    "int": "bigint",
    "bool": "boolean",
    "text": "text",
}
_BINARY_TYPES: dict[str, str] = {"float": ">f8", "int": ">i8", "int4": ">i4", "bool": "u1"}
_INT4_RANGE = (-(2**31), 2**31 - 1)
_INT8_RANGE = (-(2**63), 2**63 - 1)
# Rows per COPY statement: bounds the memory of the encoded buffer.
CHUNK_ROWS = 100_000
# Bytes of values per COPY statement of wide rows (`copy_records`), for the same reason.
CHUNK_BYTES = 16 << 20
# More string-length layouts than this: the frame is not worth encoding group by group.
MAX_LAYOUTS = 256


class _TooManyLayouts(Exception):
    """The rows' strings vary in length too much for the grouped encoding."""


@dataclasses.dataclass(frozen=True)
class _Column:
    name: str
    kind: Kind
    values: np.ndarray  # float64, int64, int32 or uint8; text: fixed-width bytes per row; null: empty
    # Byte length of each row's field, -1 for NULL, where it varies: text, NULL-able numbers, null.
    lengths: np.ndarray | None = None


def supported(session: Session) -> bool:
    """Whether the session's database takes binary COPY through psycopg2."""
    dialect = session.get_bind().dialect
    return dialect.name == "postgresql" and dialect.driver == "psycopg2"


def _text_column(name: str, series: pd.Series) -> _Column | None:
    codes, uniques = pd.factorize(series)
    if len(uniques) == 0:
        # Only NULLs: of the target's type (left out of a temporary table).
        return _Column(name, "null", np.empty(0), np.full(len(series), -1, dtype=np.int32))
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
    """Yield (row indices or None for all, field lengths) per group of rows sharing a layout."""
    varying = [column.lengths[rows] for column in columns if column.lengths is not None]
    if not varying:
        yield None, ()
        return
    stacked = np.stack(varying, axis=1)
    if (stacked == stacked[0]).all():
        yield None, tuple(int(length) for length in stacked[0])
        return
    # One code per distinct combination of lengths: the columns' codes combined column by column
    # and renumbered after each, so that they stay small.
    codes = np.zeros(len(stacked), dtype=np.int64)
    for position in range(stacked.shape[1]):
        lengths = stacked[:, position]
        if (lengths == lengths[0]).all():
            continue
        column_codes, uniques = pd.factorize(lengths)
        codes, _ = pd.factorize(codes * len(uniques) + column_codes)
        if codes.max() >= MAX_LAYOUTS:
            raise _TooManyLayouts
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for picked in np.split(order, bounds):
        yield picked, tuple(int(length) for length in stacked[picked[0]])


def _encode(
    columns: Sequence[_Column], rows: slice, picked: np.ndarray | None, layout: tuple[int, ...]
) -> bytes:
    """Encode one group of rows as binary COPY tuples."""
    fields: list[tuple[str, str]] = [("count", ">i2")]
    lengths = iter(layout)
    widths: dict[int, int] = {}
    for position, column in enumerate(columns):
        fields.append((f"l{position}", ">i4"))
        if column.lengths is None:
            fields.append((f"v{position}", _BINARY_TYPES[column.kind]))
            continue
        widths[position] = next(lengths)
        if widths[position] > 0:
            binary = f"S{widths[position]}" if column.kind == "text" else _BINARY_TYPES[column.kind]
            fields.append((f"v{position}", binary))
    size = rows.stop - rows.start if picked is None else len(picked)
    records = np.empty(size, dtype=np.dtype(fields))
    records["count"] = len(columns)
    for position, column in enumerate(columns):
        width = widths.get(position, np.dtype(_BINARY_TYPES.get(column.kind, "u1")).itemsize)
        records[f"l{position}"] = width
        if width > 0:
            values = column.values[rows]
            records[f"v{position}"] = values if picked is None else values[picked]
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


# ---- straight into a table ----------------------------------------------------------------------


def _nullable(name: str, kind: Kind, values: np.ndarray, missing: np.ndarray) -> _Column:
    """A number column whose `missing` rows are sent as NULL."""
    if not missing.any():
        return _Column(name, kind, values)
    width = np.dtype(_BINARY_TYPES[kind]).itemsize
    return _Column(name, kind, values, np.where(missing, -1, width).astype(np.int32))


def _integer_column(name: str, series: pd.Series, kind: Kind) -> _Column | None:
    """Integers for an integer column: whole numbers only (NaN is NULL), within the type's range."""
    low, high = _INT4_RANGE if kind == "int4" else _INT8_RANGE
    if series.dtype.kind in "iu":
        values = series.to_numpy()
        if len(values) and (values.min() < low or values.max() > high):
            return None
        return _Column(name, kind, values.astype(_BINARY_TYPES[kind][1:]))
    numbers = series.to_numpy(dtype=np.float64)
    missing = np.isnan(numbers)
    present = numbers[~missing]
    # Only values that convert exactly: anything else goes the way that lets PostgreSQL convert it.
    if not (np.all(present == np.rint(present)) and np.all(present >= low) and np.all(present <= high)):
        return None
    values = np.where(missing, 0, numbers).astype(_BINARY_TYPES[kind][1:])
    return _nullable(name, kind, values, missing)


def _target_column(name: str, series: pd.Series, column_type: sa.types.TypeEngine[Any]) -> _Column | None:
    """A frame column encoded in the binary form of the table column's type; None when it cannot be."""
    kind = series.dtype.kind
    if isinstance(column_type, sa.Float):
        if kind not in "fiu":
            return None
        values = series.to_numpy(dtype=np.float64)
        return _nullable(name, "float", values, np.isnan(values))
    if isinstance(column_type, sa.Boolean):
        return _Column(name, "bool", series.to_numpy(dtype=np.uint8)) if kind == "b" else None
    if isinstance(column_type, sa.SmallInteger) or not isinstance(column_type, sa.Integer):
        if isinstance(column_type, sa.String) and kind == "O":
            return _text_column(name, series)
        return None
    if kind not in "fiu":
        return None
    return _integer_column(name, series, "int" if isinstance(column_type, sa.BigInteger) else "int4")


def copy_into(session: Session, table: sa.Table, frame: pd.DataFrame) -> bool | None:
    """COPY `frame`'s rows straight into `table`, inside a savepoint.

    True: every row is stored. False: a row's key already exists (a unique violation); the
    savepoint is rolled back and nothing is stored. None: the frame cannot be sent this way
    (a column's values do not convert exactly to its type); nothing was sent. NaN is stored
    as NULL; columns missing from the frame get the table's server-side defaults.
    """
    columns: list[_Column] = []
    for name in frame.columns:
        column = _target_column(str(name), frame[name], table.c[name].type)
        if column is None:
            return None
        columns.append(column)
    try:
        buffers = list(_buffers(columns, len(frame)))
    except _TooManyLayouts:
        return None
    from psycopg2 import errors  # only reached with psycopg2 (see `supported`)

    quoted = ", ".join(f'"{column.name}"' for column in columns)
    copy = f'COPY "{table.name}" ({quoted}) FROM STDIN WITH (FORMAT binary)'
    try:
        with session.begin_nested():  # flushes pending ORM changes first, as any statement would
            connection: Any = session.connection().connection.dbapi_connection
            with connection.cursor() as cursor:  # psycopg2's
                for buffer in buffers:
                    cursor.copy_expert(copy, io.BytesIO(buffer))
    except errors.UniqueViolation:
        return False
    return True


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


# ---- rows of mixed types, bytea included ---------------------------------------------------------

_NULL_FIELD = struct.pack(">i", -1)


def _field_encoder(column_type: sa.types.TypeEngine[Any]) -> Any:
    """How one value of a column is sent in binary: a function of the value returning its bytes."""
    if isinstance(column_type, sa.LargeBinary):
        return bytes
    if isinstance(column_type, sa.String):
        return lambda value: value.encode("utf-8")
    if isinstance(column_type, sa.Float):
        return struct.Struct(">d").pack
    if isinstance(column_type, sa.BigInteger):
        return struct.Struct(">q").pack
    if isinstance(column_type, sa.Integer):
        return struct.Struct(">i").pack
    if isinstance(column_type, sa.Boolean):
        return lambda value: b"\x01" if value else b"\x00"
    raise TypeError(f"no binary COPY encoding for {column_type!r}")


def copy_records(
    session: Session, table: sa.Table, columns: Sequence[str], records: Sequence[Sequence[Any]]
) -> None:
    """COPY rows of plain Python values (None for NULL, bytes for binary columns) into `table`.

    Meant for few, wide rows (a day of readings per row), where encoding row by row in Python
    costs little beside the bytes themselves.
    """
    if not records:
        return
    encoders = [_field_encoder(table.c[name].type) for name in columns]
    field_count = struct.pack(">h", len(columns))
    length = struct.Struct(">i").pack
    quoted = ", ".join(f'"{name}"' for name in columns)
    copy = f'COPY "{table.name}" ({quoted}) FROM STDIN WITH (FORMAT binary)'
    session.flush()
    connection: Any = session.connection().connection.dbapi_connection

    def send(parts: list[bytes]) -> None:
        with connection.cursor() as cursor:  # psycopg2's
            cursor.copy_expert(copy, io.BytesIO(b"".join([_HEADER, *parts, _TRAILER])))

    parts: list[bytes] = []
    size = 0
    for record in records:
        parts.append(field_count)
        for encode, value in zip(encoders, record, strict=True):
            if value is None:
                parts.append(_NULL_FIELD)
            else:
                data = encode(value)
                parts += (length(len(data)), data)
                size += len(data)
        if size >= CHUNK_BYTES:  # bounds the memory of one statement's buffer
            send(parts)
            parts, size = [], 0
    if parts:
        send(parts)
