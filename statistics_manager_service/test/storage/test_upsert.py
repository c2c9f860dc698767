"""Bulk upserts of frames: the COPY path (PostgreSQL) stores exactly what executemany stores."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from statistics_manager_service.app import ServiceContext
from statistics_manager_service.storage import upsert
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.tables import EnergyPrice, Household, RawReading
from statistics_manager_service.storage.upsert import frame_records, upsert_frame, upsert_rows

KEY = ["user_id", "source", "ts"]
VALUES = ["energy_imported_wh", "energy_exported_wh", "energy_generated_wh", "power_imported_w", "voltage_v"]


def _readings(seed: int, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "user_id": [f"house{index % 7:05d}" for index in range(rows)],
            "source": rng.choice(["hub", "dongle", "smart_meter"], rows),
            "ts": rng.integers(0, 40, rows).astype("int64") * 900,
            # Values that text formatting would round: they must come back bit for bit.
            "energy_imported_wh": rng.random(rows) * 1e6 + 0.1 + 0.2,
            "energy_exported_wh": rng.random(rows) / 3,
            "energy_generated_wh": np.full(rows, np.nan),
            "power_imported_w": np.where(rng.random(rows) < 0.3, np.nan, rng.random(rows) * 7),
            "voltage_v": np.where(rng.random(rows) < 0.5, 5e-324, 1.7976931348623157e308),
        }
    )
    return frame.drop_duplicates(KEY).reset_index(drop=True)


def _stored(context: ServiceContext) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    with context.engine.connect() as connection:
        rows = connection.execute(sa.select(*(RawReading.__table__.c[c] for c in [*KEY, *VALUES]))).all()
    return {tuple(row[:3]): tuple(row[3:]) for row in rows}


def _expected(*frames: pd.DataFrame) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    merged = pd.concat(frames).groupby(KEY, as_index=False).max()  # max ignores NaN, as GREATEST NULLs
    return {tuple(r[:3]): tuple(r[3:]) for r in pd.DataFrame(frame_records(merged)).itertuples(index=False)}


def _same(
    left: dict[tuple[Any, ...], tuple[Any, ...]], right: dict[tuple[Any, ...], tuple[Any, ...]]
) -> None:
    assert left.keys() == right.keys()
    for key, values in left.items():
        for value, expected in zip(values, right[key], strict=True):
            if expected is None or (isinstance(expected, float) and math.isnan(expected)):
                assert value is None, key
            else:
                assert value == expected, key  # exact, not approximate


@pytest.mark.parametrize("copy_min_rows", [1, 10**9], ids=["copy", "executemany"])
def test_frames_merge_by_keeping_the_larger_value_exactly(
    context: ServiceContext, monkeypatch: pytest.MonkeyPatch, copy_min_rows: int
) -> None:
    monkeypatch.setattr(upsert, "COPY_MIN_ROWS", copy_min_rows)
    first, second = _readings(1, 250), _readings(2, 250)
    with session_scope(context.session_factory) as session:
        upsert_frame(session, RawReading, first, KEY, merge="max")
        upsert_frame(session, RawReading, second, KEY, merge="max")  # same transaction, same table
    _same(_stored(context), _expected(first, second))


def test_strings_of_any_length_and_nulls_are_copied_and_replaced(context: ServiceContext) -> None:
    rows = 300
    frame = pd.DataFrame(
        {
            "user_id": [f"h{index:09d}" for index in range(rows)],
            "tariff_type": ["simple", "bi-hourly", "tri-hourly"] * (rows // 3),
            "contracted_power_kva": [6.9 if index % 4 else np.nan for index in range(rows)],
            "zone": ["PT", "ES"] * (rows // 2),
            "postal_code": [
                None if index % 5 == 0 else "São João-" + "é" * (index % 6) for index in range(rows)
            ],
            "timezone": [None if index % 2 else "Europe/Lisbon" for index in range(rows)],
            "meter_id": [None] * rows,  # a column of NULLs only
            "created_at": np.arange(rows, dtype="int64"),
            "updated_at": np.arange(rows, dtype="int64"),
        }
    )
    with session_scope(context.session_factory) as session:
        upsert_frame(session, Household, frame.assign(zone="XX"), ["user_id"])
        upsert_frame(session, Household, frame, ["user_id"])  # replaces every column
    with context.engine.connect() as connection:
        stored = connection.execute(
            sa.select(*(Household.__table__.c[c] for c in frame.columns)).order_by(Household.user_id)
        ).all()
    assert [tuple(row) for row in stored] == [
        tuple(None if isinstance(v, float) and math.isnan(v) else v for v in record.values())
        for record in frame_records(frame)
    ]


@pytest.mark.parametrize("copy_min_rows", [1, 10**9], ids=["copy", "executemany"])
def test_rows_with_repeated_keys_apply_in_order(
    context: ServiceContext, monkeypatch: pytest.MonkeyPatch, copy_min_rows: int
) -> None:
    monkeypatch.setattr(upsert, "COPY_MIN_ROWS", copy_min_rows)
    rows = [
        {
            "zone": "PT",
            "direction": "import",
            "ts": 900 * (i % 40),
            "resolution_s": 900,
            "value": i / 7,
            "updated_at": i,
        }
        for i in range(100)
    ]
    with session_scope(context.session_factory) as session:
        upsert_rows(session, EnergyPrice, rows[:30], ["zone", "direction", "ts"])  # unique keys
        upsert_rows(session, EnergyPrice, rows, ["zone", "direction", "ts"])  # the last of each key wins
    with context.engine.connect() as connection:
        stored = dict(connection.execute(sa.select(EnergyPrice.ts, EnergyPrice.value)).all())
    assert stored == {900 * k: max(i for i in range(100) if i % 40 == k) / 7 for k in range(40)}
