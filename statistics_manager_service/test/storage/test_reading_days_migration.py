"""Upgrading a database of the previous revision (a row per reading, stored quarter hours and hours)
loses no reading and changes no answer."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from statistics_manager_service.app import create_app
from statistics_manager_service.context import ServiceContext, build_context
from statistics_manager_service.demo import load_demo_data
from statistics_manager_service.demo.households import HOUSEHOLDS
from statistics_manager_service.storage import migrate
from statistics_manager_service.storage.engine import make_engine
from statistics_manager_service.storage.readings import DAY_COLUMNS, READING_COLUMNS, decode_days
from statistics_manager_service.storage.tables import Base, ContractVersion, ReadingDay
from statistics_manager_service.test.conftest import (
    create_postgres_database,
    drop_postgres_database,
    make_settings,
)
from statistics_manager_service.test.support.statistics import statistics_rows
from statistics_manager_service.tokens import issue_token

DAYS = 4
NOW = dt.datetime(2026, 3, 30, 13, 0, tzinfo=dt.UTC)  # the spring DST day is inside the span
USERS = sorted(h.user_id for h in HOUSEHOLDS)
SERIES = (
    "energy-consumption",
    "energy-injection",
    "power-consumption",
    "power-injection",
    "voltage",
    "energy-cost",
    "co2-footprint",
)
GROUPS = ("15_mins", "hourly", "daily", "weekly", "monthly", "yearly")
PREVIOUS_RAW_READINGS = sa.table("raw_readings", *(sa.column(name) for name in READING_COLUMNS))


@pytest.fixture(params=["postgresql", "sqlite"])
def two_databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'built.db'}", f"sqlite:///{tmp_path / 'upgraded.db'}"
        return
    built, upgraded = create_postgres_database("sm_built"), create_postgres_database("sm_upgraded")
    yield built, upgraded
    drop_postgres_database(built)
    drop_postgres_database(upgraded)


def _columns(connection: sa.Connection, table_name: str) -> set[str]:
    return {column["name"] for column in sa.inspect(connection).get_columns(table_name)}


def _previous_revision_copy(built: ServiceContext, url: str) -> None:
    """Write what the previous revision held for the same events: every row of the built database,
    readings a row each, and its stored quarter hours, hours, weeks, months and years."""
    engine = make_engine(url)
    migrate.upgrade(engine, "0002")
    levels = {
        level: statistics_rows(built, level, ["energy_imported_kwh", "consumption_kwh"])
        for level in ("15_mins", "hourly", "weekly", "monthly", "yearly")
    }
    with built.engine.connect() as source, engine.begin() as target:
        for table in Base.metadata.sorted_tables:
            # Contract versions came later: the upgrade derives them from the households.
            if table.name in (ReadingDay.__tablename__, ContractVersion.__tablename__):
                continue
            # Only the tables and columns the previous revision has (later revisions add some).
            if not sa.inspect(target).has_table(table.name):
                continue
            previous = _columns(target, table.name)
            kept = [column.name for column in table.columns if column.name in previous]
            rows = [
                dict(row) for row in source.execute(sa.select(*(table.c[name] for name in kept))).mappings()
            ]
            if rows:
                target.execute(table.insert(), rows)
        days = pd.DataFrame(source.execute(sa.select(ReadingDay.__table__)).all(), columns=DAY_COLUMNS)
        readings = decode_days(days)[READING_COLUMNS]
        records = readings.astype(object).where(readings.notna(), None).to_dict("records")
        target.execute(sa.insert(PREVIOUS_RAW_READINGS), [{str(k): v for k, v in r.items()} for r in records])
        periods = Base.metadata.tables["statistics_periods"]
        for granularity, frame in levels.items():
            target.execute(
                periods.insert(),
                [
                    {
                        "user_id": user_id,
                        "granularity": granularity,
                        "period_start": int(start),
                        "energy_imported_kwh": float(imported),
                        "energy_exported_kwh": 0.0,
                        "self_consumed_kwh": 0.0,
                        "consumption_kwh": float(consumed),
                        "power_seconds": 0.0,
                        "voltage_count": 0,
                        "span_seconds": 900.0,
                        "covered_seconds": 900.0,
                        "reading_count": 1,
                        "reset_detected": False,
                        "energy_cost_eur": 0.0,
                        "fixed_cost_eur": 0.0,
                        "export_revenue_eur": 0.0,
                        "net_cost_eur": 0.0,
                        "co2_kg": 0.0,
                        "co2_avoided_kg": 0.0,
                        "updated_at": 0,
                    }
                    for user_id, start, imported, consumed in frame.itertuples(index=False, name=None)
                ],
            )
    engine.dispose()


def _urls() -> list[str]:
    start, end = "2026-03-26T00:00:00Z", "2026-03-31T00:00:00Z"
    users = "&".join(f"user_ids={user}" for user in USERS)
    urls = [
        f"/api/statistics/{kind}?{users}&start_date={start}&end_date={end}&group_by={group}"
        for kind in SERIES
        for group in GROUPS
    ]
    urls += [url + "&include_quality=true" for url in urls if "energy-consumption" in url]
    urls += [
        f"/api/statistics/power-consumed-real?user_id={user}&start_date={start}&end_date={end}&group_by={group}"
        for user in USERS
        for group in ("hourly", "daily")
    ]
    urls += [f"/api/statistics/statistics-summary?user_id={user}&date=2026-03-30" for user in USERS]
    urls += [
        f"/api/statistics/{kind}-last?{users}"
        for kind in (
            "energy-consumption",
            "energy-injection",
            "power-consumption",
            "power-injection",
            "voltage",
        )
    ]
    return urls


def _without_update_times(body: Any) -> Any:
    """The moved day rows were written by the upgrade: their `last_updated` is its time."""
    if isinstance(body, list):
        return [_without_update_times(item) for item in body]
    if isinstance(body, dict):
        return {key: _without_update_times(value) for key, value in body.items() if key != "last_updated"}
    return body


def test_an_upgraded_database_answers_exactly_as_one_built_on_the_new_revision(
    two_databases: tuple[str, str],
) -> None:
    built_url, upgraded_url = two_databases
    built = build_context(make_settings(built_url))
    assert load_demo_data(built, days=DAYS, now=NOW).dead_letters == 0
    _previous_revision_copy(built, upgraded_url)
    upgraded = build_context(make_settings(upgraded_url))  # migrates to the head revision
    assert migrate.current_revision(upgraded.engine) == migrate.head_revision()
    with upgraded.engine.connect() as connection:
        assert "raw_readings" not in sa.inspect(connection).get_table_names()
        granularities = set(
            connection.execute(sa.text("SELECT DISTINCT granularity FROM statistics_periods")).scalars()
        )
    assert granularities == {"daily"}
    with built.engine.connect() as left, upgraded.engine.connect() as right:
        columns = [c for c in DAY_COLUMNS if c != "updated_at"]
        statement = sa.select(*(ReadingDay.__table__.c[c] for c in columns)).order_by(
            ReadingDay.user_id, ReadingDay.source, ReadingDay.day
        )
        assert [tuple(map(_plain, row)) for row in left.execute(statement)] == [
            tuple(map(_plain, row)) for row in right.execute(statement)
        ]

    headers = {
        "Authorization": f"Bearer {issue_token(built.settings, service=True)}",
        "X-Correlation-ID": "migration-check",
    }
    compared = 0
    with (
        create_app(built.settings, context=built, validate_responses=True).test_client() as new,
        create_app(upgraded.settings, context=upgraded, validate_responses=True).test_client() as moved,
    ):
        for url in _urls():
            expected, got = new.get(url, headers=headers), moved.get(url, headers=headers)
            assert expected.status_code == 200, (url, expected.text)
            assert got.status_code == 200, (url, got.text)
            if "include_quality" in url:
                assert _without_update_times(got.json()) == _without_update_times(expected.json()), url
            else:
                assert got.content == expected.content, url
            compared += 1
    assert compared == len(_urls())
    built.dispose()
    upgraded.dispose()


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value
