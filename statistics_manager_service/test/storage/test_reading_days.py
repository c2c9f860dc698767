"""Readings packed into day rows come back bit for bit, and merging into them keeps the larger value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.storage import pg_copy, readings
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.readings import (
    DAY_COLUMNS,
    READING_COLUMNS,
    READING_VALUE_COLUMNS,
    CorruptDayRow,
    decode_days,
    encode_days,
    load_reading_windows,
    merge_duplicates,
    store_readings,
)
from statistics_manager_service.storage.tables import ReadingDay

DAY_S = 86_400
START_S = 1_774_656_000  # 2026-03-28T00:00:00Z


def _readings(seed: int, count: int) -> pd.DataFrame:
    """Readings of three households and two sources over three days, with values text would round."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "user_id": rng.choice(["house00001", "house00002", "house00003"], count),
            "source": rng.choice(["hub", "smart_meter"], count),
            "ts": START_S + rng.integers(0, 3 * DAY_S, count).astype(np.int64),
            "energy_imported_wh": rng.random(count) * 1e7 + 0.1 + 0.2,
            "energy_exported_wh": rng.random(count) / 3,
            "energy_generated_wh": np.where(rng.random(count) < 0.5, np.nan, rng.random(count) * 1e5),
            "power_imported_w": np.where(rng.random(count) < 0.3, np.nan, 5e-324),
            "power_exported_w": np.full(count, np.nan),
            "voltage_v": rng.normal(231.0, 2.0, count),
        }
    )
    return frame


def _exact(left: pd.DataFrame, right: pd.DataFrame) -> None:
    assert left["user_id"].tolist() == right["user_id"].tolist()
    assert left["source"].tolist() == right["source"].tolist()
    assert left["ts"].tolist() == right["ts"].tolist()
    for name in READING_VALUE_COLUMNS:
        np.testing.assert_array_equal(left[name].to_numpy(np.float64), right[name].to_numpy(np.float64))


def test_encoding_round_trips_every_value_exactly() -> None:
    merged = merge_duplicates(_readings(1, 3000))
    rows = encode_days(merged, updated_at=7)
    frame = pd.DataFrame(rows, columns=DAY_COLUMNS)
    # One row per household, source and UTC day; a column no reading of the day has is NULL.
    assert len(frame) == len(frame[["user_id", "source", "day"]].drop_duplicates()) <= 3 * 2 * 3
    assert frame["power_exported_w"].isna().all()
    assert (frame["day"] % DAY_S == 0).all()
    assert frame["reading_count"].sum() == len(merged)
    decoded = decode_days(frame)
    _exact(decoded, merged)
    assert (decoded["updated_at"] == 7).all()


def test_merging_keeps_the_larger_value_of_each_field_whatever_the_order() -> None:
    first = _readings(2, 400)
    second = first.sample(frac=1.0, random_state=3).assign(
        energy_imported_wh=lambda f: f["energy_imported_wh"] + 1.0, energy_generated_wh=np.nan
    )
    merged = merge_duplicates(pd.concat([second, first]))
    again = merge_duplicates(pd.concat([first, second, first]))
    _exact(merged, again)
    expected = first.groupby(["user_id", "source", "ts"], as_index=False).max()
    np.testing.assert_array_equal(merged["energy_imported_wh"], expected["energy_imported_wh"] + 1.0)
    np.testing.assert_array_equal(merged["energy_generated_wh"], expected["energy_generated_wh"])


def test_a_day_row_that_disagrees_with_its_count_is_refused() -> None:
    frame = pd.DataFrame(encode_days(merge_duplicates(_readings(4, 50)), updated_at=0), columns=DAY_COLUMNS)
    frame.loc[0, "reading_count"] += 1
    with pytest.raises(CorruptDayRow, match="reading_count"):
        decode_days(frame)


def test_stored_day_rows_merge_late_and_repeated_readings(
    context: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks: the rewritten rows take several DELETE and COPY statements.
    monkeypatch.setattr(readings, "KEYS_PER_DELETE", 2)
    monkeypatch.setattr(pg_copy, "CHUNK_BYTES", 4096)
    sent = _readings(5, 2000)
    parts = [sent.iloc[:700], sent.iloc[500:1500], sent.iloc[1200:], sent.iloc[:100]]
    for part in parts:
        with session_scope(context.session_factory) as session:
            store_readings(session, merge_duplicates(part))
    windows = pd.DataFrame(
        {
            "user_id": ["house00001", "house00002", "house00003"] * 2,
            "source": ["hub"] * 3 + ["smart_meter"] * 3,
            "start_s": START_S,
            "end_s": START_S + 3 * DAY_S,
        }
    )
    with session_scope(context.session_factory) as session:
        stored = load_reading_windows(session, windows)
        rows = session.execute(sa.select(sa.func.count()).select_from(ReadingDay)).scalar_one()
    _exact(merge_duplicates(stored[READING_COLUMNS]), merge_duplicates(sent))
    assert rows == len(
        merge_duplicates(sent)
        .assign(day=lambda f: f["ts"] // DAY_S)[["user_id", "source", "day"]]
        .drop_duplicates()
    )
