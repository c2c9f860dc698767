"""Housekeeping on PostgreSQL and SQLite: old event ids and Debezium's old outbox rows go, the rest stays."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid

import sqlalchemy as sa

from statistics_manager_service import metrics
from statistics_manager_service.context import ServiceContext
from statistics_manager_service.event_consumer.housekeeping import Housekeeping
from statistics_manager_service.event_consumer.runner import start_background
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.tables import AlertSent, OutboxEvent, ProcessedEvent
from statistics_manager_service.test.support.pipeline import account_message, process

DAY_S = 86400
USER = "house00042"


def _add_processed(context: ServiceContext, ages_days: list[float], now_s: float) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in ages_days]
    rows = [
        {"event_id": event_id, "event_type": "UserUpdated", "processed_at": int(now_s - age * DAY_S)}
        for event_id, age in zip(ids, ages_days, strict=True)
    ]
    with session_scope(context.session_factory) as session:
        session.execute(sa.insert(ProcessedEvent), rows)
    return ids


def _processed_ids(context: ServiceContext) -> set[str]:
    with context.engine.connect() as connection:
        return set(connection.execute(sa.select(ProcessedEvent.event_id)).scalars())


def test_old_event_ids_are_pruned_in_batches_and_a_recent_redelivery_is_still_skipped(
    context: ServiceContext,
) -> None:
    now_s = time.time()
    registered = account_message(USER)
    assert process(context, [registered]) == []
    recorded = _processed_ids(context)
    assert len(recorded) == 1
    old = _add_processed(context, [30.01, 31, 45, 90, 365] * 3, now_s)
    kept = _add_processed(context, [0.5, 7, 29.9], now_s)
    pruned_before = metrics.ROWS_PRUNED.labels("processed_events")._value.get()

    # Batches of 4 rows: 15 due rows take four transactions, and nothing younger goes.
    pruned = Housekeeping(context.session_factory, context.settings, batch_rows=4).prune_once(now_s=now_s)

    assert pruned == {"processed_events": len(old), "alerts_sent": 0}
    assert _processed_ids(context) == recorded | set(kept)
    assert metrics.ROWS_PRUNED.labels("processed_events")._value.get() == pruned_before + len(old)
    duplicates_before = metrics.EVENTS_DUPLICATE.labels("hems.user-account")._value.get()
    assert process(context, [registered]) == []
    assert metrics.EVENTS_DUPLICATE.labels("hems.user-account")._value.get() == duplicates_before + 1


def _add_outbox(context: ServiceContext, ages_hours: list[float], now_s: float) -> None:
    rows = [
        {
            "id": str(uuid.uuid4()),
            "aggregatetype": "statistics",
            "aggregateid": USER,
            "type": "StatisticsUpdated",
            "timestamp": int((now_s - age * 3600) * 1000),
            "payload": "{}",
        }
        for age in ages_hours
    ]
    with session_scope(context.session_factory) as session:
        session.execute(sa.insert(OutboxEvent), rows)


def _outbox_count(context: ServiceContext) -> int:
    with context.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(OutboxEvent)).scalar_one())


def test_old_outbox_rows_are_deleted_only_when_debezium_publishes_them(context: ServiceContext) -> None:
    now_s = time.time()
    _add_outbox(context, [25, 48, 24 * 30, 1, 23], now_s)
    relayed = dataclasses.replace(context.settings, kafka_bootstrap_servers="broker:9092")
    assert "events" not in Housekeeping(context.session_factory, relayed).prune_once(now_s=now_s)
    assert _outbox_count(context) == 5  # the relay publishes and deletes these itself

    debezium = dataclasses.replace(relayed, outbox_relay_enabled=False)
    pruned = Housekeeping(context.session_factory, debezium, batch_rows=2).prune_once(now_s=now_s)

    assert pruned["events"] == 3
    assert _outbox_count(context) == 2


def test_alert_records_go_after_their_retention(context: ServiceContext) -> None:
    now_s = time.time()
    ages = {"old1": 400.5, "old2": 900.0, "new1": 399.5, "new2": 1.0}
    rows = [
        {"user_id": USER, "cause": "voltage", "day": dt.date(2024, 1, 1) + dt.timedelta(days=n),
         "event_id": name, "created_at": int(now_s - age * DAY_S)}
        for n, (name, age) in enumerate(ages.items())
    ]  # fmt: skip
    with session_scope(context.session_factory) as session:
        session.execute(sa.insert(AlertSent), rows)
    pruned = Housekeeping(context.session_factory, context.settings, batch_rows=1).prune_once(now_s=now_s)
    assert pruned["alerts_sent"] == 2
    with context.engine.connect() as connection:
        assert set(connection.execute(sa.select(AlertSent.event_id)).scalars()) == {"new1", "new2"}


def test_the_worker_prunes_at_start(context: ServiceContext) -> None:
    _add_processed(context, [40] * 3, time.time())
    background = start_background(context, "worker")
    try:
        deadline = time.monotonic() + 60
        while _processed_ids(context) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        background.stop()
    assert _processed_ids(context) == set()
    assert "housekeeping" in [thread.name for thread in background.threads]
