"""Bulk upserts of frames: the COPY paths (PostgreSQL) store exactly what executemany stores."""

from __future__ import annotations

import math
import threading
import time
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.storage import pg_copy, upsert
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.periods import PERIOD_KEY
from statistics_manager_service.storage.tables import EnergyPrice, Household, StatisticsPeriod
from statistics_manager_service.storage.upsert import frame_records, upsert_frame, upsert_rows
from statistics_manager_service.test.conftest import clear_tables

KEY = ["user_id", "source", "ts"]
# A table of readings, a row each, for the generic machinery: keys, a growing time, NULL-able floats.
_PROBE = sa.MetaData()
READINGS = sa.Table(
    "upsert_probe",
    _PROBE,
    sa.Column("user_id", sa.String(10), primary_key=True),
    sa.Column("source", sa.String(16), primary_key=True),
    sa.Column("ts", sa.BigInteger, primary_key=True),
    sa.Column("energy_imported_wh", sa.Float, nullable=False),
    sa.Column("energy_exported_wh", sa.Float, nullable=False),
    sa.Column("energy_generated_wh", sa.Float),
    sa.Column("power_imported_w", sa.Float),
    sa.Column("power_exported_w", sa.Float),
    sa.Column("voltage_v", sa.Float),
)
VALUES = ["energy_imported_wh", "energy_exported_wh", "energy_generated_wh", "power_imported_w", "voltage_v"]


@pytest.fixture(autouse=True)
def probe_table(context: ServiceContext):  # type: ignore[no-untyped-def]
    _PROBE.create_all(context.engine)
    yield
    _PROBE.drop_all(context.engine)


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
        rows = connection.execute(sa.select(*(READINGS.c[c] for c in [*KEY, *VALUES]))).all()
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
        upsert_frame(session, READINGS, first, KEY, merge="max")
        upsert_frame(session, READINGS, second, KEY, merge="max")  # same transaction, same table
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


# ---- rows past their group's newest stored key: COPied straight into the table -----------------


def _copy_outcomes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool | None]]:
    """Record what each straight COPY into a table did (the real one runs)."""
    outcomes: list[tuple[str, bool | None]] = []
    copy_into = pg_copy.copy_into

    def recorded(session: Session, table: sa.Table, frame: pd.DataFrame) -> bool | None:
        outcome = copy_into(session, table, frame)
        outcomes.append((table.name, outcome))
        return outcome

    monkeypatch.setattr(pg_copy, "copy_into", recorded)
    return outcomes


@pytest.mark.parametrize("appends", [True, False], ids=["copy-appended", "upsert-only"])
def test_appended_readings_are_stored_exactly_as_upserted_ones(
    context: ServiceContext, monkeypatch: pytest.MonkeyPatch, appends: bool
) -> None:
    outcomes = _copy_outcomes(monkeypatch)
    first = _readings(1, 250)  # times 0 … 39 quarters: nothing stored yet
    second = _readings(2, 250).assign(ts=lambda f: f["ts"] + 20 * 900)  # half stored, half past it
    third = second.assign(energy_imported_wh=second["energy_imported_wh"] * 1.5)  # all stored
    for frame in (first, second, third):
        with session_scope(context.session_factory) as session:
            upsert_frame(session, READINGS, frame, KEY, merge="max", appends=appends)
    _same(_stored(context), _expected(first, second, third))
    if appends and context.engine.dialect.name == "postgresql":
        assert outcomes == [("upsert_probe", True), ("upsert_probe", True)]
    else:
        assert outcomes == []


def _periods(seed: int, rows: int, start: int) -> pd.DataFrame:
    """Statistics rows with NULLs, integers carried as floats, and columns left to their defaults."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user_id": [f"house{index % 5:05d}" for index in range(rows)],
            "granularity": "15_mins",
            "period_start": start + 900 * (np.arange(rows) // 5).astype("int64"),
            "energy_imported_kwh": rng.random(rows) / 3,
            "energy_generated_kwh": np.where(rng.random(rows) < 0.4, np.nan, rng.random(rows)),
            "voltage_min_v": np.full(rows, np.nan),
            "reading_count": rng.integers(0, 9, rows).astype("float64"),
            "reset_detected": rng.random(rows) < 0.1,
            "updated_at": np.full(rows, 1_700_000_000 + seed, dtype="int64"),
        }
    )


def _stored_periods(context: ServiceContext) -> list[tuple[Any, ...]]:
    table = cast(sa.Table, StatisticsPeriod.__table__)
    with context.engine.connect() as connection:
        rows = connection.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
    return [tuple(row) for row in rows]


def test_appended_statistics_get_the_values_and_defaults_an_upsert_gives(
    context: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes = _copy_outcomes(monkeypatch)
    frames = [
        _periods(1, 100, 0),
        _periods(2, 100, 10 * 900),  # half of it replaces stored rows, half is new
        _periods(3, 100, 30 * 900).assign(reading_count=2.5),  # not an integer: PostgreSQL rounds it
    ]
    stored = {}
    for appends in (False, True):
        clear_tables(context.engine)
        for frame in frames:
            with session_scope(context.session_factory) as session:
                upsert_frame(session, StatisticsPeriod, frame, PERIOD_KEY, appends=appends)
        stored[appends] = _stored_periods(context)
    assert stored[True] == stored[False]  # every column, exactly
    assert len(stored[True]) == 100 + 50 + 100
    if context.engine.dialect.name == "postgresql":
        assert outcomes == [
            ("statistics_periods", True),
            ("statistics_periods", True),
            ("statistics_periods", None),
        ]


def test_a_copy_meeting_a_stored_key_stores_nothing_and_leaves_the_transaction_usable(
    context: ServiceContext,
) -> None:
    if context.engine.dialect.name != "postgresql":
        pytest.skip("COPY is PostgreSQL's")
    first = _readings(1, 100)
    with session_scope(context.session_factory) as session:
        assert pg_copy.copy_into(session, READINGS, first) is True
    later = _readings(2, 100)
    with session_scope(context.session_factory) as session:
        assert pg_copy.copy_into(session, READINGS, later) is False
        upsert_frame(session, READINGS, later, KEY, merge="max")
    _same(_stored(context), _expected(first, later))


def test_a_row_stored_meanwhile_by_another_transaction_sends_the_copy_back_to_the_upsert(
    context: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    if context.engine.dialect.name != "postgresql":
        pytest.skip("concurrent transactions are PostgreSQL's")
    outcomes = _copy_outcomes(monkeypatch)
    stored = _readings(1, 250)
    with session_scope(context.session_factory) as session:
        upsert_frame(session, READINGS, stored, KEY, merge="max")
    incoming = _readings(2, 250).assign(ts=lambda f: f["ts"] + 40 * 900)  # entirely past the stored
    meanwhile = incoming.iloc[[len(incoming) // 2]].assign(energy_imported_wh=7e6, voltage_v=1.0)
    other = context.engine.connect()
    other.begin()
    other.execute(sa.insert(READINGS), frame_records(meanwhile))  # not committed yet
    backend: list[int] = []
    errors: list[BaseException] = []

    def upsert_incoming() -> None:
        try:
            with session_scope(context.session_factory) as session:
                connection: Any = session.connection().connection.dbapi_connection
                backend.append(connection.get_backend_pid())
                upsert_frame(session, READINGS, incoming, KEY, merge="max", appends=True)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    def waiting_for_lock() -> bool:
        with context.engine.connect() as connection:
            wait = connection.execute(
                sa.text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"), {"pid": backend[0]}
            ).scalar()
        return wait == "Lock"

    thread = threading.Thread(target=upsert_incoming, daemon=True)
    try:
        thread.start()
        deadline = time.monotonic() + 30
        while not (backend and waiting_for_lock()):  # the COPY waits for the other transaction's row
            assert thread.is_alive() and time.monotonic() < deadline, errors
            time.sleep(0.05)
        other.commit()
        thread.join(30)
    finally:
        other.close()
    assert not thread.is_alive() and not errors, errors
    assert outcomes == [("upsert_probe", False)]
    _same(_stored(context), _expected(stored, meanwhile, incoming))
