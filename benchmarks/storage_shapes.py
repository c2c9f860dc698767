"""Prototype storage shapes for meter readings in PostgreSQL and compare their cost.

The fleet: 1,000 households x 7 days of 15-minute readings (672,000 readings from 2026-03-23T00:00Z,
deterministic: numpy default_rng(42)); a third of the households have PV. Shapes, each in its own
fresh database (created and dropped by this script, also on failure):

- `raw`: one `raw_readings` row per reading (the baseline);
- `day_arrays_float8`: one row per (user_id, source, UTC day) with `int4[]` offsets and `float8[]` values;
- `day_bytea (pglz)` / `day_bytea (lz4)`: the same key, each column a little-endian packed NumPy array
  in a `bytea`, with the default TOAST compression and with `SET COMPRESSION lz4` (PostgreSQL 14+);
- `day_bytea_delta (lz4)`: like `day_bytea (lz4)`, registers as float64 deltas (first value absolute)
  and offsets as int32 deltas;
- `... (lz4, all compressed)`: the two lz4 shapes again with every column compressed inline
  (`toast_tuple_target = 128`, `STORAGE MAIN`): by default PostgreSQL compresses a row's largest
  values only until the row fits in ~2 KB, which hides the difference between the encodings;
- `day_bytea_xor (lz4, all compressed)`: Gorilla-style, every float64 column stored as the XOR of each
  value's 64-bit pattern with the previous one's in the row (first value as is), offsets as int32 deltas;
- `day_bytea_xor_shuffle (lz4, all compressed)`: the same, then byte-shuffled per column and row as
  Blosc's shuffle filter does (all first bytes of the 8-byte words, then all second bytes, ...; 4-byte
  words for the offsets), so that the mostly-zero high bytes of the XORs form long runs for lz4;
- `today`: the raw rows plus one 15-minute `statistics_periods` row per reading (the columns of
  migration 0001).

For each shape it measures: rows and bytes (`pg_total_relation_size` after `VACUUM ANALYZE`); the time
of a binary `COPY` of the whole fleet into empty tables with their primary keys (buffer prepared
beforehand, median of 3, truncated in between); the median time over 200 random picks to read one
household's readings for one day, and (on a second fleet of 20 households x 62 days, loaded after the
size was taken) for 31 consecutive days, up to NumPy columns (`ts` and the six values); and the time
to fetch every row of the fleet with one `SELECT *` and to decode those rows into NumPy arrays.
Every decoded result is checked against the generated data (bit for bit for the XOR shapes, whose
decoding undoes the shuffle and takes `np.bitwise_xor.accumulate` of the words).

PostgreSQL on 127.0.0.1:5432, user postgres, trust auth. Takes about a minute (2 cores).

Run: .venv/bin/python benchmarks/storage_shapes.py
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import os
import statistics
import struct
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeAlias

import numpy as np
import psycopg2
import psycopg2.extensions

DSN = "host=127.0.0.1 port=5432 user=postgres"
START_S = int(dt.datetime(2026, 3, 23, tzinfo=dt.UTC).timestamp())
STEP_S = 900
PER_DAY = 96
DAY_S = 86_400
HOUSEHOLDS, DAYS = 1_000, 7
QUERY_HOUSEHOLDS, QUERY_DAYS, QUERY_SPAN_DAYS = 20, 62, 31
PICKS = 200
COPY_REPEATS = 3
SOURCE = "hub"
UPDATED_AT = START_S + QUERY_DAYS * DAY_S
REGISTERS = ("energy_imported_wh", "energy_exported_wh", "energy_generated_wh")
VALUE_COLUMNS = (*REGISTERS, "power_imported_w", "power_exported_w", "voltage_v")
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
FLOAT8_OID, INT4_OID = 701, 23

Readings = dict[str, np.ndarray]  # "ts" (int64) and VALUE_COLUMNS (float64, NaN where absent)
Cursor: TypeAlias = psycopg2.extensions.cursor


# --- data ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Fleet:
    """Readings of households on a common 15-minute grid: `values[column]` has shape (households, steps)."""

    user_ids: list[str]
    ts: np.ndarray  # (steps,) int64 epoch seconds
    values: dict[str, np.ndarray]

    @property
    def households(self) -> int:
        return len(self.user_ids)

    @property
    def days(self) -> int:
        return self.ts.size // PER_DAY

    @property
    def readings(self) -> int:
        return self.households * self.ts.size

    def expected(self, household: int, first_day: int, days: int) -> Readings:
        """The generated readings of one household over `days` days from `first_day`."""
        steps = slice(first_day * PER_DAY, (first_day + days) * PER_DAY)
        return {"ts": self.ts[steps], **{name: self.values[name][household, steps] for name in VALUE_COLUMNS}}


def _register(increments_wh: np.ndarray, base_wh: np.ndarray, resolution_wh: np.ndarray) -> np.ndarray:
    """A cumulative register starting at `base_wh`, counted in whole steps of `resolution_wh` (1 or 0.1)."""
    step = resolution_wh[:, None]
    units = np.round(increments_wh / step).astype(np.int64)
    counts = (
        np.round(base_wh / resolution_wh).astype(np.int64)[:, None] + np.cumsum(units, axis=1) - units[:, :1]
    )
    return np.round(counts * step, 1)


def make_fleet(rng: np.random.Generator, households: int, days: int, prefix: str) -> Fleet:
    """15-minute readings: a load with morning and evening peaks; PV (and exports) on every third home."""
    steps = days * PER_DAY
    ts = START_S + STEP_S * np.arange(steps, dtype=np.int64)
    hour = (ts % DAY_S) / 3600.0 + 0.125  # UTC, middle of the quarter hour
    has_pv = (np.arange(households) % 3 == 0)[:, None]
    profile = 0.1 + 0.35 * np.exp(-(((hour - 7.0) / 1.2) ** 2)) + 0.55 * np.exp(-(((hour - 19.0) / 2.0) ** 2))
    level = rng.uniform(0.6, 1.0, (households, 1))
    load_wh = np.clip(
        50.0 + 250.0 * level * profile * rng.uniform(0.7, 1.3, (households, steps)), 50.0, 300.0
    )
    sun = np.clip(np.sin(np.pi * (hour - 5.5) / 12.5), 0.0, None)
    clouds = np.repeat(rng.uniform(0.3, 1.0, (households, days)), PER_DAY, axis=1)
    kwp = rng.uniform(3.0, 8.0, (households, 1))
    pv_wh = np.where(has_pv, kwp * 250.0 * sun * clouds * rng.uniform(0.85, 1.0, (households, steps)), 0.0)
    imported_wh = np.maximum(load_wh - pv_wh, 0.0)
    exported_wh = np.maximum(pv_wh - load_wh, 0.0)
    resolution = np.where(rng.random(households) < 1 / 3, 0.1, 1.0)
    no_pv = ~has_pv[:, 0]
    exported_base = np.where(
        no_pv, rng.integers(0, 5_000, households), rng.integers(10_000, 2_000_000, households)
    )
    values = {
        "energy_imported_wh": _register(
            imported_wh, rng.integers(100_000, 5_000_000, households), resolution
        ),
        "energy_exported_wh": _register(exported_wh, exported_base.astype(np.float64), resolution),
        "energy_generated_wh": np.where(
            has_pv, _register(pv_wh, rng.integers(100_000, 8_000_000, households), resolution), np.nan
        ),
        "power_imported_w": np.round(imported_wh * 4.0 * rng.uniform(0.6, 1.4, (households, steps)), 1),
        "power_exported_w": np.round(exported_wh * 4.0 * rng.uniform(0.6, 1.4, (households, steps)), 1),
        "voltage_v": np.round(rng.uniform(229.8, 231.9, (households, steps)), 1),
    }
    user_ids = [f"{prefix}{index:09d}" for index in range(1, households + 1)]
    return Fleet(user_ids, ts, values)


# --- binary COPY encoding ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Field:
    """One column of a binary COPY: every row's value bytes (fixed width) and which rows are NULL."""

    payload: np.ndarray  # uint8, (rows, width)
    null: np.ndarray | None = None  # bool, (rows,)


def text_field(values: np.ndarray) -> Field:
    """ASCII strings of one length (a `S<n>` array)."""
    return Field(np.ascontiguousarray(values).view(np.uint8).reshape(values.size, -1))


def constant_text_field(value: str, rows: int) -> Field:
    return Field(np.broadcast_to(np.frombuffer(value.encode(), dtype=np.uint8), (rows, len(value))))


def number_field(values: np.ndarray, dtype: str, null: np.ndarray | None = None) -> Field:
    """Big-endian numbers (`>i8`, `>f8`, `u1` for booleans), one per row."""
    return Field(np.ascontiguousarray(values, dtype=dtype).view(np.uint8).reshape(values.size, -1), null)


def float8_field(values: np.ndarray) -> Field:
    """float8 values, NaN as NULL."""
    null = np.isnan(values)
    return number_field(values, ">f8", null if null.any() else None)


def array_field(matrix: np.ndarray, oid: int, dtype: str, null: np.ndarray | None = None) -> Field:
    """A one-dimensional PostgreSQL array per row (no NULL elements), in binary array format."""
    rows, length = matrix.shape
    size = np.dtype(dtype).itemsize
    header = np.frombuffer(struct.pack(">iiiii", 1, 0, oid, length, 1), dtype=np.uint8)
    elements = np.empty((rows, length), dtype=[("length", ">i4"), ("value", dtype)])
    elements["length"] = size
    elements["value"] = matrix
    payload = np.concatenate(
        [np.broadcast_to(header, (rows, header.size)), elements.view(np.uint8).reshape(rows, -1)], axis=1
    )
    return Field(payload, null)


def bytea_field(matrix: np.ndarray, dtype: str, null: np.ndarray | None = None) -> Field:
    """Each row's array packed as `dtype` (little-endian) into a bytea."""
    return Field(np.ascontiguousarray(matrix, dtype=dtype).view(np.uint8).reshape(matrix.shape[0], -1), null)


def shuffle_bytes(matrix: np.ndarray, dtype: str) -> np.ndarray:
    """Each row's array packed as `dtype`, its bytes transposed (Blosc's shuffle): the first byte of every
    element, then every second byte, ... -> uint8, (rows, elements * itemsize)."""
    packed = np.ascontiguousarray(matrix, dtype=dtype)
    rows, elements = packed.shape
    planes = packed.view(np.uint8).reshape(rows, elements, packed.itemsize).transpose(0, 2, 1)
    return np.ascontiguousarray(planes).reshape(rows, -1)


def unshuffle_bytes(data: bytes, dtype: str) -> np.ndarray:
    """The inverse of `shuffle_bytes` for one row."""
    planes = np.frombuffer(data, dtype=np.uint8).reshape(np.dtype(dtype).itemsize, -1)
    return np.ascontiguousarray(planes.T).view(dtype).ravel()


def xor_previous(matrix: np.ndarray) -> np.ndarray:
    """Each float64's bit pattern XOR the previous one's in its row (the first as is), as little-endian
    uint64; `np.bitwise_xor.accumulate` along a row gives the bit patterns back."""
    bits = np.ascontiguousarray(matrix, dtype="<f8").view("<u8")
    words = bits.copy()
    words[:, 1:] ^= bits[:, :-1]
    return words


def encode_copy(fields: Sequence[Field]) -> bytes:
    """A binary COPY stream of the rows; NULL fields lose their bytes (one boolean mask over the matrix)."""
    rows = fields[0].payload.shape[0]
    parts = [np.full((rows, 1), len(fields), dtype=">i2").view(np.uint8)]
    for field in fields:
        length = np.full(rows, field.payload.shape[1], dtype=">i4")
        if field.null is not None:
            length[field.null] = -1
        parts += [length.view(np.uint8).reshape(rows, 4), field.payload]
    matrix = np.concatenate(parts, axis=1)
    if all(field.null is None for field in fields):
        return COPY_HEADER + matrix.tobytes() + COPY_TRAILER
    keep = np.ones(matrix.shape, dtype=bool)
    column = 2
    for field in fields:
        column += 4
        width = field.payload.shape[1]
        if field.null is not None:
            keep[field.null, column : column + width] = False
        column += width
    return COPY_HEADER + matrix[keep].tobytes() + COPY_TRAILER


# --- shapes: tables and their COPY buffers -------------------------------------------------------

RAW_DDL = """CREATE TABLE raw_readings (
    user_id varchar(10), source varchar(16), ts bigint, energy_imported_wh float8, energy_exported_wh float8,
    energy_generated_wh float8, power_imported_w float8, power_exported_w float8, voltage_v float8,
    PRIMARY KEY (user_id, source, ts))"""

PERIOD_FLOAT_COLUMNS = (
    "energy_imported_kwh",
    "energy_exported_kwh",
    "energy_generated_kwh",
    "self_consumed_kwh",
    "consumption_kwh",
    "power_imported_mean_w",
    "power_imported_max_w",
    "power_exported_mean_w",
    "power_exported_max_w",
    "power_seconds",
    "voltage_mean_v",
    "voltage_min_v",
    "voltage_max_v",
    "span_seconds",
    "covered_seconds",
    "energy_cost_eur",
    "fixed_cost_eur",
    "export_revenue_eur",
    "net_cost_eur",
    "co2_kg",
    "co2_avoided_kg",
)
PERIODS_DDL = f"""CREATE TABLE statistics_periods (
    user_id varchar(10), granularity varchar(8), period_start bigint,
    {", ".join(f"{name} float8" for name in PERIOD_FLOAT_COLUMNS)},
    voltage_count bigint, reading_count bigint, reset_detected boolean, updated_at bigint,
    PRIMARY KEY (user_id, granularity, period_start))"""


def day_ddl(value_type: str, offsets_type: str) -> str:
    columns = ", ".join(f"{name} {value_type}" for name in VALUE_COLUMNS)
    return f"""CREATE TABLE day_readings (
    user_id varchar(10), source varchar(16), day bigint, ts_offsets {offsets_type}, {columns},
    updated_at bigint, PRIMARY KEY (user_id, source, day))"""


def lz4_ddl() -> list[str]:
    columns = ("ts_offsets", *VALUE_COLUMNS)
    return [f"ALTER TABLE day_readings ALTER COLUMN {name} SET COMPRESSION lz4" for name in columns]


def compress_all_ddl() -> list[str]:
    """Compress every array column, inline: a low toast_tuple_target with STORAGE MAIN (moved out of line
    only past ~8 KB). By default the toaster stops compressing once a row fits in ~2 KB."""
    columns = ("ts_offsets", *VALUE_COLUMNS)
    return [
        "ALTER TABLE day_readings SET (toast_tuple_target = 128)",
        *(f"ALTER TABLE day_readings ALTER COLUMN {name} SET STORAGE MAIN" for name in columns),
    ]


def raw_copy(fleet: Fleet) -> bytes:
    steps = fleet.ts.size
    fields = [
        text_field(np.repeat(np.array(fleet.user_ids, dtype="S10"), steps)),
        constant_text_field(SOURCE, fleet.readings),
        number_field(np.tile(fleet.ts, fleet.households), ">i8"),
        *(float8_field(fleet.values[name].ravel()) for name in VALUE_COLUMNS),
    ]
    return encode_copy(fields)


def periods_copy(fleet: Fleet) -> bytes:
    """One plausible 15-minute statistics row per reading."""
    rows = fleet.readings

    def per_quarter(name: str) -> np.ndarray:
        register = fleet.values[name]
        return (np.diff(register, axis=1, prepend=register[:, :1]) / 1000.0).ravel()

    imported, exported, generated = (per_quarter(name) for name in REGISTERS)
    self_consumed = np.where(np.isnan(generated), 0.0, np.nan_to_num(generated) - exported).clip(0.0)
    power_imported = fleet.values["power_imported_w"].ravel()
    power_exported = fleet.values["power_exported_w"].ravel()
    voltage = fleet.values["voltage_v"].ravel()
    energy_cost = imported * 0.21
    fixed_cost = np.full(rows, 0.0052)
    export_revenue = exported * 0.08
    floats = {
        "energy_imported_kwh": imported,
        "energy_exported_kwh": exported,
        "energy_generated_kwh": generated,
        "self_consumed_kwh": self_consumed,
        "consumption_kwh": imported + self_consumed,
        "power_imported_mean_w": power_imported,
        "power_imported_max_w": np.round(power_imported * 1.3, 1),
        "power_exported_mean_w": power_exported,
        "power_exported_max_w": np.round(power_exported * 1.2, 1),
        "power_seconds": np.full(rows, 900.0),
        "voltage_mean_v": voltage,
        "voltage_min_v": voltage - 0.4,
        "voltage_max_v": voltage + 0.3,
        "span_seconds": np.full(rows, 900.0),
        "covered_seconds": np.full(rows, 900.0),
        "energy_cost_eur": energy_cost,
        "fixed_cost_eur": fixed_cost,
        "export_revenue_eur": export_revenue,
        "net_cost_eur": energy_cost + fixed_cost - export_revenue,
        "co2_kg": imported * 0.16,
        "co2_avoided_kg": self_consumed * 0.16,
    }
    fields = [
        text_field(np.repeat(np.array(fleet.user_ids, dtype="S10"), fleet.ts.size)),
        constant_text_field("15_mins", rows),
        number_field(np.tile(fleet.ts, fleet.households), ">i8"),
        *(float8_field(floats[name]) for name in PERIOD_FLOAT_COLUMNS),
        number_field(np.ones(rows, dtype=np.int64), ">i8"),
        number_field(np.ones(rows, dtype=np.int64), ">i8"),
        number_field(np.zeros(rows, dtype=np.uint8), "u1"),
        number_field(np.full(rows, UPDATED_AT, dtype=np.int64), ">i8"),
    ]
    return encode_copy(fields)


@dataclasses.dataclass(frozen=True)
class DayCodec:
    """How a day row's columns are packed into PostgreSQL values and decoded back into NumPy arrays."""

    kind: str  # "float8[]", "bytea", "bytea_delta", "bytea_xor" or "bytea_xor_shuffle"

    @property
    def xor(self) -> bool:
        return self.kind in ("bytea_xor", "bytea_xor_shuffle")

    @property
    def shuffle(self) -> bool:
        return self.kind == "bytea_xor_shuffle"

    @property
    def delta_offsets(self) -> bool:
        return self.kind == "bytea_delta" or self.xor

    def packed_field(self, matrix: np.ndarray, dtype: str, null: np.ndarray | None = None) -> Field:
        """Each row's array packed as `dtype` into a bytea, byte-shuffled if the codec says so."""
        if self.shuffle:
            return Field(shuffle_bytes(matrix, dtype), null)
        return bytea_field(matrix, dtype, null)

    def unpack(self, data: bytes, dtype: str) -> np.ndarray:
        return unshuffle_bytes(data, dtype) if self.shuffle else np.frombuffer(data, dtype=dtype)

    def offsets_field(self, offsets: np.ndarray) -> Field:
        if self.kind == "float8[]":
            return array_field(offsets, INT4_OID, ">i4")
        if self.delta_offsets:
            offsets = np.diff(offsets, axis=1, prepend=0)
        return self.packed_field(offsets, "<i4")

    def values_field(self, name: str, matrix: np.ndarray) -> Field:
        absent = np.isnan(matrix).all(axis=1)
        null = absent if absent.any() else None
        if self.kind == "float8[]":
            return array_field(matrix, FLOAT8_OID, ">f8", null)
        if self.kind == "bytea_delta" and name in REGISTERS:
            if np.isnan(matrix[~absent]).any():
                raise ValueError(f"{name}: a gap inside a day cannot be delta-encoded here")
            matrix = np.diff(matrix, axis=1, prepend=0.0)
        if self.xor:
            return self.packed_field(xor_previous(matrix), "<u8", null)
        return bytea_field(matrix, "<f8", null)

    def decode(self, row: Sequence[Any]) -> Readings:
        """(day, ts_offsets, *VALUE_COLUMNS) -> NumPy columns."""
        day, offsets, *values = row
        if self.kind == "float8[]":
            ts = np.array(offsets, dtype=np.int64) + day
            result = {"ts": ts}
            for name, value in zip(VALUE_COLUMNS, values, strict=True):
                result[name] = (
                    np.full(ts.size, np.nan) if value is None else np.array(value, dtype=np.float64)
                )
            return result
        steps = self.unpack(offsets, "<i4")
        ts = (np.cumsum(steps, dtype=np.int64) if self.delta_offsets else steps.astype(np.int64)) + day
        result = {"ts": ts}
        for name, value in zip(VALUE_COLUMNS, values, strict=True):
            if value is None:
                result[name] = np.full(ts.size, np.nan)
            elif self.xor:
                result[name] = np.bitwise_xor.accumulate(self.unpack(value, "<u8")).view("<f8")
            elif self.kind == "bytea_delta" and name in REGISTERS:
                result[name] = np.cumsum(np.frombuffer(value, dtype="<f8"))
            else:
                result[name] = np.frombuffer(value, dtype="<f8")
        return result


def day_copy(fleet: Fleet, codec: DayCodec) -> bytes:
    rows = fleet.households * fleet.days
    day_starts = START_S + DAY_S * np.arange(fleet.days, dtype=np.int64)
    offsets = (fleet.ts.reshape(fleet.days, PER_DAY) - day_starts[:, None]).astype(np.int32)
    fields = [
        text_field(np.repeat(np.array(fleet.user_ids, dtype="S10"), fleet.days)),
        constant_text_field(SOURCE, rows),
        number_field(np.tile(day_starts, fleet.households), ">i8"),
        codec.offsets_field(np.tile(offsets, (fleet.households, 1))),
        *(codec.values_field(name, fleet.values[name].reshape(rows, PER_DAY)) for name in VALUE_COLUMNS),
        number_field(np.full(rows, UPDATED_AT, dtype=np.int64), ">i8"),
    ]
    return encode_copy(fields)


# --- reading back --------------------------------------------------------------------------------

ROW_QUERY = (
    f"SELECT ts, {', '.join(VALUE_COLUMNS)} FROM raw_readings"
    f" WHERE user_id = %s AND source = '{SOURCE}' AND ts >= %s AND ts < %s ORDER BY ts"
)
DAY_QUERY = (
    f"SELECT day, ts_offsets, {', '.join(VALUE_COLUMNS)} FROM day_readings"
    f" WHERE user_id = %s AND source = '{SOURCE}' AND day >= %s AND day < %s ORDER BY day"
)


def rows_to_columns(rows: Sequence[Sequence[Any]], first: int = 0) -> Readings:
    """Row tuples holding ts and VALUE_COLUMNS from position `first` on -> NumPy columns (NULL as NaN)."""
    result = {"ts": np.array([row[first] for row in rows], dtype=np.int64)}
    for index, name in enumerate(VALUE_COLUMNS, start=first + 1):
        result[name] = np.array([row[index] for row in rows], dtype=np.float64)
    return result


def concatenate(days: list[Readings]) -> Readings:
    if len(days) == 1:
        return days[0]
    return {name: np.concatenate([day[name] for day in days]) for name in days[0]}


def read_rows(cursor: Cursor, user_id: str, start_s: int, end_s: int) -> Readings:
    cursor.execute(ROW_QUERY, (user_id, start_s, end_s))
    return rows_to_columns(cursor.fetchall())


def day_reader(codec: DayCodec) -> Callable[[Cursor, str, int, int], Readings]:
    def read_days(cursor: Cursor, user_id: str, start_s: int, end_s: int) -> Readings:
        cursor.execute(DAY_QUERY, (user_id, start_s, end_s))
        return concatenate([codec.decode(row) for row in cursor.fetchall()])

    return read_days


def assert_same(actual: Readings, expected: Readings, what: str, bits: bool = False) -> None:
    """Equal values (NaN equal to NaN), or with `bits` the same 64-bit patterns."""
    for name, values in expected.items():
        if bits:
            same = actual[name].dtype == values.dtype and np.array_equal(
                actual[name].view(np.uint64), values.view(np.uint64)
            )
        else:
            same = np.array_equal(actual[name], values, equal_nan=True)
        if not same:
            raise AssertionError(f"{what}: {name} differs from the generated readings")


# --- shapes --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Shape:
    """A storage shape: its tables, how to fill them, how to read one household back, how to decode all."""

    name: str
    ddl: tuple[str, ...]
    tables: tuple[str, ...]
    buffers: Callable[[Fleet], list[bytes]]  # one binary COPY buffer per table, in `tables` order
    read: Callable[[Cursor, str, int, int], Readings]
    fetch_all_sql: str
    decode_all: Callable[[list[tuple[Any, ...]]], list[Readings]]
    compressed_columns: tuple[str, ...] = ()
    needs_lz4: bool = False
    bit_exact: bool = False  # checked bit for bit against the generated readings


def row_shape(name: str, with_periods: bool) -> Shape:
    ddl = (RAW_DDL, PERIODS_DDL) if with_periods else (RAW_DDL,)
    tables = ("raw_readings", "statistics_periods") if with_periods else ("raw_readings",)

    def buffers(fleet: Fleet) -> list[bytes]:
        return [raw_copy(fleet), periods_copy(fleet)] if with_periods else [raw_copy(fleet)]

    return Shape(
        name=name,
        ddl=ddl,
        tables=tables,
        buffers=buffers,
        read=read_rows,
        fetch_all_sql="SELECT * FROM raw_readings ORDER BY user_id, source, ts",
        decode_all=lambda rows: [rows_to_columns(rows, first=2)],
    )


def day_shape(name: str, codec: DayCodec, lz4: bool = False, compress_all: bool = False) -> Shape:
    if codec.kind == "float8[]":
        ddl = [day_ddl("float8[]", "int4[]")]
    else:
        ddl = [day_ddl("bytea", "bytea"), *(lz4_ddl() if lz4 else [])]
    if compress_all:
        ddl += compress_all_ddl()
    return Shape(
        name=name,
        ddl=tuple(ddl),
        tables=("day_readings",),
        buffers=lambda fleet: [day_copy(fleet, codec)],
        read=day_reader(codec),
        fetch_all_sql="SELECT * FROM day_readings ORDER BY user_id, source, day",
        decode_all=lambda rows: [codec.decode(row[2:10]) for row in rows],  # day .. voltage_v
        compressed_columns=("ts_offsets", *VALUE_COLUMNS),
        needs_lz4=lz4,
        bit_exact=codec.xor,
    )


SHAPES = (
    row_shape("raw", with_periods=False),
    day_shape("day_arrays_float8", DayCodec("float8[]")),
    day_shape("day_bytea (pglz)", DayCodec("bytea")),
    day_shape("day_bytea (lz4)", DayCodec("bytea"), lz4=True),
    day_shape("day_bytea_delta (lz4)", DayCodec("bytea_delta"), lz4=True),
    # Not in the brief: every column compressed (see compress_all_ddl), to compare the encodings themselves.
    day_shape("day_bytea (lz4, all compressed)", DayCodec("bytea"), lz4=True, compress_all=True),
    day_shape("day_bytea_delta (lz4, all compressed)", DayCodec("bytea_delta"), lz4=True, compress_all=True),
    day_shape("day_bytea_xor (lz4, all compressed)", DayCodec("bytea_xor"), lz4=True, compress_all=True),
    day_shape(
        "day_bytea_xor_shuffle (lz4, all compressed)",
        DayCodec("bytea_xor_shuffle"),
        lz4=True,
        compress_all=True,
    ),
    row_shape("today (raw + 15-min statistics)", with_periods=True),
)


# --- measuring -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Picks:
    """Random (household, first day) picks, the same for every shape."""

    day: list[tuple[int, int]]
    month: list[tuple[int, int]]


def random_picks(rng: np.random.Generator, households: int, first_days: int) -> list[tuple[int, int]]:
    chosen = zip(
        rng.integers(0, households, PICKS).tolist(), rng.integers(0, first_days, PICKS).tolist(), strict=True
    )
    return list(chosen)


@dataclasses.dataclass
class Result:
    name: str
    rows: int = 0
    total_bytes: int = 0
    heap_bytes: int = 0
    toast_bytes: int = 0
    index_bytes: int = 0
    compressed: str = "–"
    copy_s: list[float] = dataclasses.field(default_factory=list)
    day_ms: float = 0.0
    month_ms: float = 0.0
    fetch_all_s: float = 0.0
    decode_us: float = 0.0
    skipped: str = ""


@contextlib.contextmanager
def scratch_database(shape_name: str) -> Iterator[psycopg2.extensions.connection]:
    """A fresh database (autocommit connection to it), dropped afterwards whatever happens."""
    slug = "".join(char if char.isalnum() else "_" for char in shape_name.lower()).strip("_")
    name = f"sm_bench_shapes_{os.getpid()}_{slug}"[:63]
    admin = psycopg2.connect(DSN + " dbname=postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        connection = psycopg2.connect(f"{DSN} dbname={name}")
        connection.autocommit = True
        try:
            yield connection
        finally:
            connection.close()
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def lz4_unsupported() -> str:
    """Why `SET COMPRESSION lz4` cannot be used on this server ("" when it can)."""
    with contextlib.closing(psycopg2.connect(DSN + " dbname=postgres")) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version_num")
            if int(cursor.fetchone()[0]) < 140000:
                return "PostgreSQL < 14"
            try:
                cursor.execute("SET default_toast_compression = 'lz4'")
            except psycopg2.Error as error:
                return f"no lz4 in this build ({error.pgerror or error})".strip()
    return ""


def copy_in(cursor: Cursor, tables: Sequence[str], buffers: Sequence[bytes]) -> float:
    """COPY each buffer into its table in one transaction; return the seconds it took."""
    streams = [io.BytesIO(buffer) for buffer in buffers]
    started = time.perf_counter()
    cursor.execute("BEGIN")
    for table, stream in zip(tables, streams, strict=True):
        cursor.copy_expert(f"COPY {table} FROM STDIN (FORMAT binary)", stream, size=1 << 20)
    cursor.execute("COMMIT")
    return time.perf_counter() - started


def timed_copies(cursor: Cursor, shape: Shape, buffers: Sequence[bytes]) -> list[float]:
    seconds = []
    for _ in range(COPY_REPEATS):
        cursor.execute(f"TRUNCATE {', '.join(shape.tables)}")
        cursor.execute("CHECKPOINT")
        seconds.append(copy_in(cursor, shape.tables, buffers))
    return seconds


def measure_sizes(cursor: Cursor, shape: Shape, result: Result) -> None:
    for table in shape.tables:
        cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute(
            "SELECT pg_total_relation_size(c.oid), pg_table_size(c.oid), pg_indexes_size(c.oid),"
            " coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)"
            " FROM pg_class c WHERE c.oid = %s::regclass",
            (table,),
        )
        total, table_bytes, index_bytes, toast_bytes = cursor.fetchone()
        cursor.execute(f"SELECT count(*) FROM {table}")
        result.rows += cursor.fetchone()[0]
        result.total_bytes += total
        result.heap_bytes += table_bytes - toast_bytes
        result.toast_bytes += toast_bytes
        result.index_bytes += index_bytes
    if shape.compressed_columns:
        counts = ", ".join(
            f"count(*) FILTER (WHERE pg_column_compression({name}) IS NOT NULL), count({name})"
            for name in shape.compressed_columns
        )
        cursor.execute(f"SELECT {counts} FROM day_readings")
        found = cursor.fetchone()
        compressed, present = sum(found[0::2]), sum(found[1::2])
        result.compressed = f"{compressed / present:.0%}"


def measure_fetch_all(cursor: Cursor, shape: Shape, fleet: Fleet, result: Result) -> None:
    started = time.perf_counter()
    cursor.execute(shape.fetch_all_sql)
    rows = cursor.fetchall()
    fetched = time.perf_counter()
    decoded = shape.decode_all(rows)
    result.fetch_all_s = fetched - started
    result.decode_us = (time.perf_counter() - fetched) / fleet.readings * 1e6
    head = concatenate(decoded[: fleet.days])  # the first household
    steps = fleet.days * PER_DAY
    head = {name: values[:steps] for name, values in head.items()}
    assert_same(head, fleet.expected(0, 0, fleet.days), f"{shape.name}, SELECT *", shape.bit_exact)
    if sum(part["ts"].size for part in decoded) != fleet.readings:
        raise AssertionError(f"{shape.name}: SELECT * decoded the wrong number of readings")


def median_read_ms(
    cursor: Cursor, shape: Shape, fleet: Fleet, picks: list[tuple[int, int]], days: int
) -> float:
    seconds = []
    for household, first_day in picks:
        start_s = START_S + first_day * DAY_S
        started = time.perf_counter()
        readings = shape.read(cursor, fleet.user_ids[household], start_s, start_s + days * DAY_S)
        seconds.append(time.perf_counter() - started)
        expected = fleet.expected(household, first_day, days)
        assert_same(readings, expected, f"{shape.name}, {days} day(s)", shape.bit_exact)
    return statistics.median(seconds) * 1e3


def measure_shape(shape: Shape, fleet: Fleet, query_fleet: Fleet, picks: Picks) -> Result:
    result = Result(shape.name)
    buffers = shape.buffers(fleet)
    with scratch_database(shape.name) as connection, connection.cursor() as cursor:
        for statement in shape.ddl:
            cursor.execute(statement)
        result.copy_s = timed_copies(cursor, shape, buffers)
        del buffers
        measure_sizes(cursor, shape, result)
        measure_fetch_all(cursor, shape, fleet, result)
        copy_in(cursor, shape.tables, shape.buffers(query_fleet))
        for table in shape.tables:
            cursor.execute(f"VACUUM ANALYZE {table}")
        median_read_ms(cursor, shape, fleet, picks.day[:20], 1)  # warm up the connection and caches
        result.day_ms = median_read_ms(cursor, shape, fleet, picks.day, 1)
        result.month_ms = median_read_ms(cursor, shape, query_fleet, picks.month, QUERY_SPAN_DAYS)
    return result


# --- report --------------------------------------------------------------------------------------


def print_tables(results: list[Result], fleet: Fleet) -> None:
    baseline = statistics.median(results[0].copy_s)
    print(
        "\n| shape | rows | total bytes | bytes/reading | COPY s (median of 3) | COPY / raw"
        " | 1 household × 1 day, ms | 1 household × 31 days, ms | fetch all (SELECT *), s"
        " | decode, µs/reading |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for result in results:
        if result.skipped:
            print(f"| {result.name} | skipped: {result.skipped} | | | | | | | | |")
            continue
        copy_s = statistics.median(result.copy_s)
        per_reading = result.total_bytes / fleet.readings
        print(
            f"| {result.name} | {result.rows:,} | {result.total_bytes:,} | {per_reading:.1f}"
            f" | {copy_s:.2f} | {copy_s / baseline:.2f} | {result.day_ms:.3f} | {result.month_ms:.3f}"
            f" | {result.fetch_all_s:.2f} | {result.decode_us:.2f} |"
        )
    print("\n| shape | heap bytes | TOAST bytes | index bytes | values compressed | COPY runs, s |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for result in results:
        if not result.skipped:
            runs = " / ".join(f"{seconds:.2f}" for seconds in result.copy_s)
            print(
                f"| {result.name} | {result.heap_bytes:,} | {result.toast_bytes:,} | {result.index_bytes:,}"
                f" | {result.compressed} | {runs} |"
            )


def main() -> int:
    began = time.perf_counter()
    rng = np.random.default_rng(42)
    fleet = make_fleet(rng, HOUSEHOLDS, DAYS, "u")
    query_fleet = make_fleet(rng, QUERY_HOUSEHOLDS, QUERY_DAYS, "q")
    picks = Picks(
        day=random_picks(rng, HOUSEHOLDS, DAYS),
        month=random_picks(rng, QUERY_HOUSEHOLDS, QUERY_DAYS - QUERY_SPAN_DAYS + 1),
    )
    with (
        contextlib.closing(psycopg2.connect(DSN + " dbname=postgres")) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
    lz4_missing = lz4_unsupported()
    print(
        f"PostgreSQL {version}; {fleet.households:,} households x {fleet.days} days = {fleet.readings:,}"
        f" readings; query fleet {query_fleet.households} x {query_fleet.days} days",
        flush=True,
    )
    results = []
    for shape in SHAPES:
        if shape.needs_lz4 and lz4_missing:
            results.append(Result(shape.name, skipped=lz4_missing))
            continue
        print(f"  {shape.name} ...", end=" ", flush=True)
        results.append(measure_shape(shape, fleet, query_fleet, picks))
        print(f"done ({time.perf_counter() - began:.0f} s)", flush=True)
    print_tables(results, fleet)
    print(f"\n{time.perf_counter() - began:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
