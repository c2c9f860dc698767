"""The --demo data set: loaded through the real handlers, idempotent, realistic, on PostgreSQL and SQLite."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re

import jwt
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.demo import load_demo, load_demo_data, solar
from statistics_manager_service.demo.h0 import easter_sunday, h0_power_w
from statistics_manager_service.demo.households import HOUSEHOLDS
from statistics_manager_service.storage.tables import Base, ServiceState, StatisticsPeriod
from statistics_manager_service.test.support.statistics import statistics_rows

DAYS = 14
SHORT_DAYS = 6
USER_IDS = sorted(h.user_id for h in HOUSEHOLDS)
RESET_USER = next(h.user_id for h in HOUSEHOLDS if h.quirk == "meter-replacement")
GAP_USER = next(h.user_id for h in HOUSEHOLDS if h.quirk == "gap")
ENERGY_COLUMNS = (
    "energy_imported_kwh",
    "energy_exported_kwh",
    "energy_generated_kwh",
    "self_consumed_kwh",
    "consumption_kwh",
)


def _now() -> dt.datetime:
    """Yesterday at noon: whole local days precede it whatever the time the tests run at."""
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    return yesterday.replace(hour=12, minute=0, second=0, microsecond=0)


def _fingerprint(context: ServiceContext) -> dict[str, object]:
    """Row counts of every table and a checksum of every statistics row, update times included."""
    with context.engine.connect() as connection:
        counts = {
            table.name: connection.execute(sa.select(sa.func.count()).select_from(table)).scalar()
            for table in Base.metadata.sorted_tables
        }
        table = StatisticsPeriod.__table__
        rows = connection.execute(
            sa.select(table).order_by(table.c.user_id, table.c.granularity, table.c.period_start)
        ).all()
    digest = hashlib.sha256(repr([tuple(row) for row in rows]).encode()).hexdigest()
    return {"counts": counts, "statistics": digest}


def _periods(context: ServiceContext, granularity: str) -> pd.DataFrame:
    columns = [*ENERGY_COLUMNS, "reset_detected", "covered_seconds", "span_seconds"]
    return statistics_rows(context, granularity, columns)


def test_demo_loads_every_household_through_the_handlers_once(
    context: ServiceContext, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    now = _now()
    with caplog.at_level(logging.INFO, logger="statistics_manager_service.demo"):
        load_demo(context, days=DAYS, now=now)

    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "an event was refused"
    assert any("Service token" in r.getMessage() for r in caplog.records)
    progress = [r.getMessage() for r in caplog.records if " events sent, " in r.getMessage()]
    assert progress[0].startswith(f"demo: accounts of {len(HOUSEHOLDS)} households: ")
    readings = [
        line
        for line in progress
        if line.startswith(f"demo: readings of {len(HOUSEHOLDS)} households through ")
    ]
    assert readings and f"(day {DAYS} of {DAYS}): " in readings[-1]
    assert progress[-1].startswith(f"demo: baseline forecasts of {len(HOUSEHOLDS)} households: ")
    counts = [tuple(map(int, re.findall(r"(\d+) of (\d+) events sent", line)[0])) for line in progress]
    sent = [done for done, _ in counts]
    assert sent == sorted(sent) and len(set(sent)) == len(sent), progress
    assert counts[-1][0] == counts[-1][1] > DAYS * len(HOUSEHOLDS), progress[-1]

    printed = capsys.readouterr().out
    for user_id in USER_IDS:
        assert user_id in printed
    assert "/energy-consumption?" in printed and "/statistics-summary?" in printed
    lines = printed.splitlines()
    token = lines[next(i for i, line in enumerate(lines) if line.startswith("Service token")) + 1].strip()
    settings = context.settings
    claims = jwt.decode(token, settings.jwt_sign_key, algorithms=[settings.jwt_sign_algorithm])
    assert claims["role"] == "service"
    assert not [r for r in caplog.records if token.split(".")[2] in r.getMessage()], "a token was logged"
    daily = _periods(context, "daily")
    assert sorted(daily["user_id"].unique()) == USER_IDS
    assert daily.groupby("user_id").size().min() == DAYS
    with context.engine.connect() as connection:
        signals = connection.execute(sa.text("SELECT DISTINCT zone, kind FROM carbon_intensity")).all()
        directions = connection.execute(sa.text("SELECT DISTINCT direction FROM energy_prices")).all()
    assert sorted(signals) == [("PT", "actual"), ("PT", "forecast")]
    assert sorted(d for (d,) in directions) == ["export", "import"]
    with context.engine.connect() as connection:
        versions = connection.execute(
            sa.text(
                "SELECT user_id, MIN(effective_from), MIN(effective_source) FROM contract_versions GROUP BY user_id"
            )
        ).all()
    # Every demo contract holds from the first demo day (its readings start there), as the account
    # event states, not from when the demo happened to load.
    first_day = int(daily["period_start"].min())
    assert sorted(versions) == [(user_id, first_day, "effective_from") for user_id in USER_IDS]
    with context.engine.connect() as connection:
        terms = connection.execute(
            sa.text(
                "SELECT user_id, billing_day, large_family, bill_budget_eur FROM contract_versions"
                " WHERE billing_day IS NOT NULL OR large_family IS NOT NULL OR bill_budget_eur IS NOT NULL"
            )
        ).all()
    # The households that state billing terms in their account events, and only those, keep them.
    assert [(u, d, bool(f), b) for u, d, f, b in terms] == [
        (h.user_id, h.billing_day, h.large_family, h.bill_budget_eur)
        for h in HOUSEHOLDS
        if h.billing_day is not None or h.large_family is not None or h.bill_budget_eur is not None
    ]
    assert len(terms) == 1 and terms[0][1] != 1
    before = _fingerprint(context)

    again = load_demo_data(context, days=DAYS, now=now)

    assert again.events_sent == 0
    assert again.events_planned > DAYS * len(HOUSEHOLDS)
    assert _fingerprint(context) == before
    _assert_quirks(context)


def _assert_quirks(context: ServiceContext) -> None:
    """Energy is never negative; only the replaced meter resets; only the dongle home has a gap."""
    for granularity in ("15_mins", "hourly", "daily"):
        periods = _periods(context, granularity)
        for column in ENERGY_COLUMNS:
            assert (periods[column].fillna(0.0) >= 0.0).all(), (granularity, column)
    daily = _periods(context, "daily")
    resets = daily[daily["reset_detected"]]
    assert resets["user_id"].tolist() == [RESET_USER]
    # The new meter starts near zero: the day counts an ordinary day's energy, not a jump.
    usual = daily[(daily["user_id"] == RESET_USER) & ~daily["reset_detected"]]["consumption_kwh"]
    assert 0.3 * usual.median() < resets.iloc[0]["consumption_kwh"] < 3.0 * usual.median()
    coverage = daily["covered_seconds"] / daily["span_seconds"]
    partial = daily[(coverage < 0.99) & (daily["period_start"] < daily["period_start"].max())]
    assert partial["user_id"].tolist() == [GAP_USER]
    pv = daily[daily["user_id"].isin([h.user_id for h in HOUSEHOLDS if h.has_pv])]
    assert (pv.groupby("user_id")["energy_generated_kwh"].sum() > 0).all()
    assert (pv.groupby("user_id")["energy_exported_kwh"].sum() > 0).all()


def test_a_later_run_extends_the_history_without_inventing_resets(context: ServiceContext) -> None:
    now = _now()
    load_demo_data(context, days=SHORT_DAYS, now=now - dt.timedelta(days=1))

    later = load_demo_data(context, days=DAYS, now=now)

    assert later.dead_letters == 0
    assert later.span.days == SHORT_DAYS + 1  # the stored plan wins: same first day, one more day
    assert 0 < later.events_sent < later.events_planned
    daily = _periods(context, "daily")
    assert daily[daily["reset_detected"]]["user_id"].tolist() == [RESET_USER]
    assert (daily["consumption_kwh"] >= 0).all()


def test_a_demo_made_with_another_pv_model_is_kept_as_it_is(context: ServiceContext) -> None:
    plan = {"first_day": "2026-01-01", "days": SHORT_DAYS, "model": "pvlib 0.0.1"}
    with context.engine.begin() as connection:
        connection.execute(
            sa.insert(ServiceState).values(key="demo_plan", value=json.dumps(plan), updated_at=0)
        )

    load = load_demo_data(context, days=SHORT_DAYS, now=_now())

    assert load.stale and load.events_sent == 0
    assert _periods(context, "daily").empty


def test_h0_profile_scales_to_the_annual_consumption() -> None:
    year = pd.date_range("2026-01-01", "2027-01-01", freq="15min", inclusive="left", tz="Europe/Lisbon")
    power_w = h0_power_w(year, 3500.0)
    assert power_w.sum() * 0.25 / 1000 == pytest.approx(3500.0, rel=0.01)
    evening = power_w[(year.hour == 20) & (year.month == 1)].mean()
    night = power_w[(year.hour == 4) & (year.month == 1)].mean()
    assert evening > 3 * night
    assert [easter_sunday(y) for y in (2024, 2025, 2026)] == [
        dt.date(2024, 3, 31),
        dt.date(2025, 4, 20),
        dt.date(2026, 4, 5),
    ]


def test_built_in_pv_model_stays_close_to_pvlib(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pvlib")
    start = int(pd.Timestamp("2026-01-01", tz="Europe/Lisbon").timestamp())
    quarters = start + 900 * np.arange(365 * 96, dtype=np.int64)
    with_pvlib = solar.pv_power_w(solar.weather(quarters, "Europe/Lisbon"), 1.0).sum() * 0.25 / 1000
    monkeypatch.setattr(solar, "_pvlib", lambda: None)
    built_in = solar.pv_power_w(solar.weather(quarters, "Europe/Lisbon"), 1.0).sum() * 0.25 / 1000
    # Lisbon, 30° south: about 1,500 kWh per kWp and year.
    assert 1300 < with_pvlib < 1700
    assert built_in == pytest.approx(with_pvlib, rel=0.08)
