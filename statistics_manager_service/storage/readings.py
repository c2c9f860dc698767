"""Meter readings stored as one row of packed column arrays per household, source and UTC day.

A reading costs its values' bytes and a 96th of a row, instead of a row of its own (see
docs/STORAGE.md). Storing merges readings into their day rows in the caller's transaction: the
union of instants, and the larger value of each field where an instant repeats, so the rows are
the same whatever the order and multiplicity of delivery. The caller must hold the households
(`SELECT … FOR UPDATE`) so that no other transaction rewrites the same day rows meanwhile.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.arrays import composite_keys, run_starts
from statistics_manager_service.storage import pg_copy
from statistics_manager_service.storage.tables import Household, ReadingDay
from statistics_manager_service.storage.windows import read_windows

DAY_S = 86_400
READING_VALUE_COLUMNS = [
    "energy_imported_wh",
    "energy_exported_wh",
    "energy_generated_wh",
    "power_imported_w",
    "power_exported_w",
    "voltage_v",
]
READING_COLUMNS = ["user_id", "source", "ts", *READING_VALUE_COLUMNS]
READING_KEY = ["user_id", "source", "ts"]
DAY_KEY = ["user_id", "source", "day"]
DAY_COLUMNS = [
    *DAY_KEY,
    "reading_count",
    "first_ts",
    "last_ts",
    "ts_offsets",
    *READING_VALUE_COLUMNS,
    "updated_at",
]
# Day rows deleted per statement: three bind parameters each.
KEYS_PER_DELETE = 2_000
_OFFSET_TYPE = np.dtype("<i4")
_VALUE_TYPE = np.dtype("<f8")
_BITS_TYPE = np.dtype("<u8")


class CorruptDayRow(ValueError):
    """A stored day row whose arrays disagree with its reading count."""


def source_keys(users: pd.Series, sources: pd.Series, days: Any = None) -> pd.Index:
    """One label per (user_id, source) pair, or per (user_id, source, day) with `days`."""
    labels = users.astype(str) + "\x00" + sources.astype(str)
    if days is not None:
        labels = labels + "\x00" + pd.Series(days, index=labels.index).astype(str)
    return pd.Index(labels)


def day_of(ts_s: Any) -> Any:
    """Return the start (epoch seconds) of the UTC day holding each instant."""
    return ts_s // DAY_S * DAY_S


# ---- the codec ----------------------------------------------------------------------------------


def merge_duplicates(readings: pd.DataFrame) -> pd.DataFrame:
    """Sort readings by (user, source, ts) and merge repeated instants into the larger value per field.

    `fmax` ignores missing values, so a copy lacking a field never hides one that has it.
    """
    user_codes, users = pd.factorize(readings["user_id"].to_numpy(dtype=object), sort=True)
    source_codes, sources = pd.factorize(readings["source"].to_numpy(dtype=object), sort=True)
    ts = readings["ts"].to_numpy(dtype=np.int64)
    pairs = user_codes.astype(np.int64) * max(len(sources), 1) + source_codes
    keys = composite_keys(pairs, ts, int(ts.min()) if ts.size else 0)
    values = {
        name: readings[name].to_numpy(dtype=np.float64, na_value=np.nan) for name in READING_VALUE_COLUMNS
    }
    if keys.size > 1 and bool((keys[1:] < keys[:-1]).any()):
        order = np.argsort(keys, kind="stable")
        keys, user_codes, source_codes, ts = keys[order], user_codes[order], source_codes[order], ts[order]
        values = {name: column[order] for name, column in values.items()}
    if keys.size > 1 and bool((keys[1:] == keys[:-1]).any()):
        starts = run_starts(keys)
        values = {name: np.fmax.reduceat(column, starts) for name, column in values.items()}
        user_codes, source_codes, ts = user_codes[starts], source_codes[starts], ts[starts]
    return pd.DataFrame(
        {
            "user_id": np.asarray(users, dtype=object)[user_codes],
            "source": np.asarray(sources, dtype=object)[source_codes],
            "ts": ts,
            **values,
        }
    )


def _differences(values: np.ndarray, starts: np.ndarray, xor: bool) -> np.ndarray:
    """Each value against the previous one of its day row (XOR of bit patterns, or subtraction);
    the first of each row is kept as it is."""
    previous = np.empty_like(values)
    previous[1:] = values[:-1]
    previous[starts] = 0
    return values ^ previous if xor else values - previous


def _shuffled(values: np.ndarray) -> bytes:
    """The values' bytes grouped by significance: all first bytes, then all second bytes, …"""
    return values.view(np.uint8).reshape(values.size, values.itemsize).T.tobytes()


def encode_days(readings: pd.DataFrame, updated_at: int) -> list[tuple[Any, ...]]:
    """Pack readings sorted by (user, source, ts) without repeats into day rows (DAY_COLUMNS order).

    Within a day row, offsets are stored as differences and values as the XOR of each value's bit
    pattern with the previous one's, both with their bytes grouped by significance: slowly
    changing registers then leave long runs of equal bytes for the compression, and decoding is
    exact.
    """
    if readings.empty:
        return []
    ts = readings["ts"].to_numpy(dtype=np.int64)
    days = day_of(ts)
    users = readings["user_id"].to_numpy(dtype=object)
    sources = readings["source"].to_numpy(dtype=object)
    change = np.ones(ts.size, dtype=bool)
    change[1:] = (users[1:] != users[:-1]) | (sources[1:] != sources[:-1]) | (days[1:] != days[:-1])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], ts.size)
    offsets = _differences((ts - days).astype(_OFFSET_TYPE), starts, xor=False)
    values = {}
    present = {}
    for name in READING_VALUE_COLUMNS:
        column = readings[name].to_numpy(dtype=np.float64, na_value=np.nan).astype(_VALUE_TYPE, copy=False)
        present[name] = np.add.reduceat(~np.isnan(column), starts) > 0
        values[name] = _differences(column.view(_BITS_TYPE), starts, xor=True)
    rows = []
    for index, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        rows.append(
            (
                users[start],
                sources[start],
                int(days[start]),
                end - start,
                int(ts[start]),
                int(ts[end - 1]),
                _shuffled(offsets[start:end]),
                *(
                    _shuffled(values[name][start:end]) if present[name][index] else None
                    for name in READING_VALUE_COLUMNS
                ),
                updated_at,
            )
        )
    return rows


@functools.lru_cache(maxsize=256)
def _missing(count: int) -> bytes:
    """The packed values of a column absent from a day row of `count` readings."""
    nan = np.full(count, np.nan, dtype=_VALUE_TYPE).view(_BITS_TYPE)
    return _shuffled(_differences(nan, np.zeros(1, dtype=np.int64), xor=True))


def _unpacked(blobs: list[Any], counts: np.ndarray, dtype: np.dtype[Any], name: str, xor: bool) -> np.ndarray:
    """Undo `encode_days` for one column of many day rows: readings in row order."""
    out = np.empty(int(counts.sum()), dtype=dtype)
    row_starts = np.cumsum(counts) - counts
    for count in np.unique(counts).tolist():  # rows of one length at a time, usually one or two
        rows = np.flatnonzero(counts == count)
        data = b"".join(blobs[row] for row in rows.tolist())
        if len(data) != rows.size * count * dtype.itemsize:
            raise CorruptDayRow(f"reading_days: {name} does not match reading_count")
        grouped = np.frombuffer(data, dtype=np.uint8).reshape(rows.size, dtype.itemsize, count)
        differences = np.ascontiguousarray(grouped.transpose(0, 2, 1)).view(dtype).reshape(rows.size, count)
        restored = np.bitwise_xor.accumulate(differences, axis=1) if xor else np.cumsum(differences, axis=1)
        out[(row_starts[rows][:, None] + np.arange(count)).ravel()] = restored.ravel()
    return out


def decode_days(rows: pd.DataFrame) -> pd.DataFrame:
    """Unpack day rows (DAY_COLUMNS) into readings (READING_COLUMNS and the row's `updated_at`)."""
    if rows.empty:
        return empty_readings()
    counts = rows["reading_count"].to_numpy(dtype=np.int64)
    days = rows["day"].to_numpy(dtype=np.int64)
    offsets = _unpacked(rows["ts_offsets"].tolist(), counts, _OFFSET_TYPE, "ts_offsets", xor=False)
    columns: dict[str, Any] = {
        "user_id": np.repeat(rows["user_id"].to_numpy(dtype=object), counts),
        "source": np.repeat(rows["source"].to_numpy(dtype=object), counts),
        "ts": offsets.astype(np.int64) + np.repeat(days, counts),
    }
    for name in READING_VALUE_COLUMNS:
        blobs = [
            _missing(count) if blob is None else blob
            for blob, count in zip(rows[name].tolist(), counts.tolist(), strict=True)
        ]
        bits = _unpacked(blobs, counts, _BITS_TYPE, name, xor=True)
        columns[name] = bits.view(_VALUE_TYPE).astype(np.float64)
    columns["updated_at"] = np.repeat(rows["updated_at"].to_numpy(dtype=np.int64), counts)
    return pd.DataFrame(columns)


def empty_readings() -> pd.DataFrame:
    """Return a readings frame with no rows and the right column types."""
    frame = pd.DataFrame({name: np.zeros(0, dtype=np.float64) for name in READING_COLUMNS})
    frame["user_id"] = frame["user_id"].astype(object)
    frame["source"] = frame["source"].astype(object)
    frame["ts"] = frame["ts"].astype(np.int64)
    frame["updated_at"] = np.zeros(0, dtype=np.int64)
    return frame


# ---- storing ------------------------------------------------------------------------------------


def _day_windows(keys: pd.DataFrame) -> pd.DataFrame:
    """Windows on the `day` column selecting exactly the day rows of (user_id, source, day) keys."""
    return pd.DataFrame(
        {
            "user_id": keys["user_id"].to_numpy(),
            "source": keys["source"].to_numpy(),
            "start_s": keys["day"].to_numpy(dtype=np.int64),
            "end_s": keys["day"].to_numpy(dtype=np.int64) + 1,
        }
    )


def _read_day_rows(session: Session, windows: pd.DataFrame) -> pd.DataFrame:
    """Day rows (DAY_COLUMNS) whose `day` lies in a (user_id, source, start_s, end_s) window."""
    return read_windows(session, ReadingDay.__table__, DAY_COLUMNS, windows, ["user_id", "source"], "day")


def store_readings(session: Session, incoming: pd.DataFrame) -> pd.DataFrame:
    """Merge readings (as `merge_duplicates` returns them) into their day rows; return the day
    rows' readings as now stored.

    The returned frame holds every reading of each day touched (READING_COLUMNS and
    `updated_at`), sorted by (user, source, ts).
    """
    if incoming.empty:
        return empty_readings()
    keys = pd.DataFrame(
        {
            "user_id": incoming["user_id"].to_numpy(),
            "source": incoming["source"].to_numpy(),
            "day": day_of(incoming["ts"].to_numpy(dtype=np.int64)),
        }
    ).drop_duplicates(ignore_index=True)
    stored = _read_day_rows(session, _day_windows(keys))
    combined = incoming
    if not stored.empty:
        combined = merge_duplicates(pd.concat([decode_days(stored), incoming], ignore_index=True))
    now = int(time.time())
    rows = encode_days(combined, now)
    _write_day_rows(session, rows, stored[DAY_KEY])
    combined["updated_at"] = now
    return combined


def _write_day_rows(session: Session, rows: list[tuple[Any, ...]], replaced: pd.DataFrame) -> None:
    """Replace the `replaced` day rows and insert `rows` (whose keys include all of them)."""
    table = cast(sa.Table, ReadingDay.__table__)
    keys = list(
        zip(
            replaced["user_id"].tolist(),
            replaced["source"].tolist(),
            replaced["day"].astype("int64").tolist(),
            strict=True,
        )
    )
    key = sa.tuple_(table.c.user_id, table.c.source, table.c.day)
    for offset in range(0, len(keys), KEYS_PER_DELETE):  # bounded bind parameters (SQLite's limit)
        session.execute(sa.delete(table).where(key.in_(keys[offset : offset + KEYS_PER_DELETE])))
    if pg_copy.supported(session):
        pg_copy.copy_records(session, table, DAY_COLUMNS, rows)
    elif rows:
        session.execute(sa.insert(table), [dict(zip(DAY_COLUMNS, row, strict=True)) for row in rows])


# ---- reading ------------------------------------------------------------------------------------


def load_reading_windows(session: Session, windows: pd.DataFrame) -> pd.DataFrame:
    """Load the readings of each (user_id, source, start_s, end_s) window, end excluded.

    Columns: READING_COLUMNS and the `updated_at` of the day row each reading is stored in.
    """
    if windows.empty:
        return empty_readings()
    rows = _read_day_rows(
        session,
        windows.assign(
            start_s=day_of(windows["start_s"].to_numpy(dtype=np.int64)),
            end_s=windows["end_s"].to_numpy(dtype=np.int64),
        ),
    )
    readings = decode_days(rows)
    if readings.empty:
        return readings
    window_keys = source_keys(windows["user_id"], windows["source"])
    if window_keys.is_unique:  # the usual case: one window per household and source
        position = window_keys.get_indexer(source_keys(readings["user_id"], readings["source"]))
        at = np.where(position >= 0, position, 0)
        ts = readings["ts"].to_numpy(dtype=np.int64)
        keep = (
            (position >= 0)
            & (ts >= windows["start_s"].to_numpy(dtype=np.int64)[at])
            & (ts < windows["end_s"].to_numpy(dtype=np.int64)[at])
        )
        return readings[keep].reset_index(drop=True)
    bounds = (
        readings[["user_id", "source", "ts"]]
        .reset_index()
        .merge(windows[["user_id", "source", "start_s", "end_s"]], on=["user_id", "source"])
    )
    inside = bounds.loc[(bounds["ts"] >= bounds["start_s"]) & (bounds["ts"] < bounds["end_s"]), "index"]
    return readings.loc[np.unique(inside.to_numpy())].reset_index(drop=True)


def load_day_readings(session: Session, keys: pd.DataFrame) -> pd.DataFrame:
    """Load the readings of whole day rows, given by their (user_id, source, day) keys."""
    if keys.empty:
        return empty_readings()
    return decode_days(_read_day_rows(session, _day_windows(keys)))


def neighbour_times(session: Session, keys: pd.DataFrame, before: bool) -> list[int | None]:
    """Per (user_id, source, day) key: the last reading in an earlier day row, or the first reading
    in a later one (`before=False`); None where there is none. On PostgreSQL in one statement."""
    if keys.empty:
        return []
    table = ReadingDay.__table__
    users, sources = keys["user_id"].tolist(), keys["source"].tolist()
    days = keys["day"].astype("int64").tolist()
    if session.get_bind().dialect.name != "postgresql":
        aggregate = sa.func.max(table.c.last_ts) if before else sa.func.min(table.c.first_ts)
        found: list[int | None] = []
        for user_id, source, day in zip(users, sources, days, strict=True):
            statement = sa.select(aggregate).where(
                table.c.user_id == user_id,
                table.c.source == source,
                table.c.day < day if before else table.c.day > day,
            )
            value = session.execute(statement).scalar()
            found.append(None if value is None else int(value))
        return found
    text, number = postgresql.ARRAY(sa.String), postgresql.ARRAY(sa.BigInteger)
    wanted = (
        sa.func.unnest(
            sa.cast(sa.bindparam("users", users, type_=text), text),
            sa.cast(sa.bindparam("sources", sources, type_=text), text),
            sa.cast(sa.bindparam("days", days, type_=number), number),
        )
        .table_valued("user_id", "source", "day", with_ordinality="position")
        .render_derived(name="wanted")
    )
    same = sa.and_(table.c.user_id == wanted.c.user_id, table.c.source == wanted.c.source)
    if before:
        value = sa.select(sa.func.max(table.c.last_ts)).where(same, table.c.day < wanted.c.day)
    else:
        value = sa.select(sa.func.min(table.c.first_ts)).where(same, table.c.day > wanted.c.day)
    statement = sa.select(wanted.c.position, value.scalar_subquery()).select_from(wanted)
    result: list[int | None] = [None] * len(users)
    for position, ts in session.execute(statement):
        result[int(position) - 1] = None if ts is None else int(ts)
    return result


def reading_span(session: Session, user_id: str, source: str | None = None) -> tuple[int | None, int | None]:
    """Return the first and last stored reading time of a household's source (of all its sources
    when `source` is None)."""
    table = ReadingDay.__table__
    condition = table.c.user_id == user_id
    if source is not None:
        condition = sa.and_(condition, table.c.source == source)
    row = session.execute(
        sa.select(sa.func.min(table.c.first_ts), sa.func.max(table.c.last_ts)).where(condition)
    ).one()
    return (None if row[0] is None else int(row[0]), None if row[1] is None else int(row[1]))


def _newest_days(session: Session, user_ids: Sequence[str], column: str) -> pd.DataFrame:
    """Each household's newest day row of its statistics source in which `column` is present."""
    days = ReadingDay.__table__
    newer = sa.alias(days, "newer")
    newest_day = (
        sa.select(sa.func.max(newer.c.day))
        .where(
            newer.c.user_id == Household.user_id,
            newer.c.source == Household.statistics_source,
            newer.c[column].is_not(None),
        )
        .scalar_subquery()
    )
    statement = (
        sa.select(*(days.c[name] for name in DAY_COLUMNS))
        .select_from(Household)
        .join(
            days,
            sa.and_(
                days.c.user_id == Household.user_id,
                days.c.source == Household.statistics_source,
                days.c.day == newest_day,
            ),
        )
        .where(Household.user_id.in_(sorted(set(user_ids))))
    )
    return pd.DataFrame(session.execute(statement).all(), columns=DAY_COLUMNS)


def _newest_with(session: Session, user_ids: Sequence[str], column: str) -> pd.DataFrame:
    """Each household's newest reading in which `column` is present (READING_COLUMNS)."""
    readings = decode_days(_newest_days(session, user_ids, column))
    readings = readings[readings[column].notna()]
    return readings.drop_duplicates("user_id", keep="last").reset_index(drop=True)


def latest_readings(session: Session, user_ids: Sequence[str], column: str) -> pd.DataFrame:
    """Return each household's newest value of `column` (user_id, ts, value)."""
    newest = _newest_with(session, user_ids, column)
    return pd.DataFrame(
        {
            "user_id": newest["user_id"].to_numpy(dtype=object),
            "ts": newest["ts"].to_numpy(dtype=np.int64),
            "value": newest[column].to_numpy(dtype=np.float64),
        }
    )


def latest_registers(session: Session, user_ids: Sequence[str]) -> pd.DataFrame:
    """Return each household's newest energy registers (Wh) and their time."""
    columns = ["energy_imported_wh", "energy_exported_wh", "energy_generated_wh"]
    newest = _newest_with(session, user_ids, "energy_imported_wh")
    return newest[["user_id", "ts", *columns]].reset_index(drop=True)
