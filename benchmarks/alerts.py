"""Benchmark the alert job against the ingestion of the days it checks, on PostgreSQL.

Households get 29 local days of 15-minute hub readings (with voltage) through the consumer's
batch processor, one message per household and day, as live meters send them; the last message
of each household closes its 29th day. The ingestion is timed. Then the alert job checks every
household's newly completed day (every cause: the day's consumption against four same-weekday
days, its night's baseload against theirs, the day's 10-minute voltage means, and the open billing
period's projected bill against the budget every household is given, so that every household's
bill is priced) and is timed too.

What it tells: the job's cost per household-day checked, against the ingestion's cost per
household-day stored; were the checks done inside the batch that closes a day, that batch would
pay the job's cost on top of its own.

PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth); a database is created and dropped.
Run: .venv/bin/python benchmarks/alerts.py [--households 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import time
from zoneinfo import ZoneInfo

import numpy as np
import sqlalchemy as sa
from databases import benchmark_database

from statistics_manager_service.context import build_context
from statistics_manager_service.event_consumer.alerts import AlertJob
from statistics_manager_service.event_consumer.runner import build_processor
from statistics_manager_service.storage.tables import AlertProgress, AlertSent, OutboxEvent
from statistics_manager_service.tariff_loading import updater_for
from statistics_manager_service.test.conftest import make_settings
from statistics_manager_service.test.support.pipeline import account_message, meter_message, reading

DAYS = 29
FIRST_DAY = dt.date(2026, 10, 26)
ZONE = ZoneInfo("Europe/Lisbon")
MESSAGES_PER_BATCH = 500


def day_readings(day: dt.date, register_wh: float, rng: np.random.Generator) -> tuple[list[dict], float]:
    """A local day of 15-minute readings (and the first one of the next day)."""
    start = dt.datetime.combine(day, dt.time(), ZONE).astimezone(dt.UTC)
    readings = []
    for quarter in range(96):
        at = start + dt.timedelta(minutes=15 * quarter)
        readings.append(reading(at, round(register_wh, 3), voltage_v=float(rng.normal(230, 2))))
        register_wh += float(rng.uniform(50, 250))
    return readings, register_wh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    with benchmark_database("sm_bench_alerts") as url:
        context = build_context(make_settings(url))
        processor = build_processor(context)
        users = [f"alerts{n:04d}" for n in range(args.households)]
        registers = dict.fromkeys(users, 1_000.0)
        # A budget for everyone: the bill rule prices each household's open period.
        budgets = [account_message(u, effective_from="2020-01-01T00:00:00Z", bill_budget=50.0) for u in users]
        assert processor.process(budgets) == []
        messages = []
        for offset in range(DAYS + 1):
            day = FIRST_DAY + dt.timedelta(days=offset)
            for user_id in users:
                readings, registers[user_id] = day_readings(day, registers[user_id], rng)
                messages.append(meter_message(user_id, readings[:1] if offset == DAYS else readings))
        started = time.perf_counter()
        for start in range(0, len(messages), MESSAGES_PER_BATCH):
            assert processor.process(messages[start : start + MESSAGES_PER_BATCH]) == []
        ingest_s = time.perf_counter() - started
        job = AlertJob(context.session_factory, context.settings, updater_for(context).book)
        started = time.perf_counter()
        queued = job.run_once()
        job_s = time.perf_counter() - started
        by_cause = {}
        for cause in context.settings.alert_causes:
            with context.engine.begin() as connection:
                connection.execute(sa.delete(AlertProgress))
                connection.execute(sa.delete(AlertSent))
                connection.execute(sa.delete(OutboxEvent))
            settings = dataclasses.replace(context.settings, alert_causes=(cause,))
            started = time.perf_counter()
            AlertJob(context.session_factory, settings, updater_for(context).book).run_once()
            by_cause[cause] = (time.perf_counter() - started) / args.households * 1000
        context.dispose()
    ingest_per_day_ms = ingest_s / (args.households * DAYS) * 1000
    job_per_day_ms = job_s / args.households * 1000
    print(f"households: {args.households}, days: {DAYS}, alerts queued: {queued}")
    print(f"ingestion: {ingest_s:.1f} s, {ingest_per_day_ms:.2f} ms per household-day stored")
    print(f"alert job: {job_s:.1f} s, {job_per_day_ms:.2f} ms per household-day checked")
    print("per cause alone: " + ", ".join(f"{cause} {ms:.2f} ms" for cause, ms in by_cause.items()))
    print(f"ratio: checking a day costs {job_per_day_ms / ingest_per_day_ms:.2f}x storing it")


if __name__ == "__main__":
    main()
