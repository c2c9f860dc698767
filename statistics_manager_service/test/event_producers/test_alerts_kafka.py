"""An alert the job queues reaches the statistics topic through the relay and a real broker."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.event_consumer.alerts import alert_event_id
from statistics_manager_service.storage.alerts import AlertKey
from statistics_manager_service.storage.tables import OutboxEvent
from statistics_manager_service.test.event_consumer.kafka_support import (
    debezium_payload,
    drain,
    running_workers,
    wait_until,
)
from statistics_manager_service.test.event_consumer.test_alerts import DAY, USER, feed, spike
from statistics_manager_service.test.support.kafka_broker import KafkaBroker


def _outbox_count(context: ServiceContext) -> int:
    with context.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(OutboxEvent)).scalar_one())


def test_a_voltage_alert_is_published_once_in_the_debezium_envelope(
    kafka_ctx: ServiceContext, kafka_broker: KafkaBroker
) -> None:
    feed(kafka_ctx, DAY - dt.timedelta(days=1), voltage=spike(dt.time(9, 30), 200.0))
    announcements = _outbox_count(kafka_ctx)
    with running_workers(kafka_ctx):
        wait_until(lambda: _outbox_count(kafka_ctx) == 0 and _alerts_sent(kafka_ctx) == 1, what="the alert")
        records = drain(
            kafka_broker, kafka_ctx.settings.topic("statistics"), expected=announcements + 2, timeout_s=5
        )
    alerts = [record for record in records if debezium_payload(record)["eventType"] == "VoltageOutOfRange"]
    assert len(records) == announcements + 1 and len(alerts) == 1
    [record] = alerts
    event = debezium_payload(record)
    event_id = alert_event_id(AlertKey(USER, "voltage", DAY))
    assert record.key == USER.encode()
    assert (event["eventId"], event["aggregateType"], event["aggregateId"]) == (event_id, "statistics", USER)
    assert (dict(record.headers)["id"], dict(record.headers)["eventType"]) == (
        event_id.encode(),
        b"VoltageOutOfRange",
    )
    assert event["payload"]["worst_mean_v"] == 200.0
    assert event["payload"]["worst_interval_start"] == "2026-11-23T09:30:00+00:00"
    assert (event["payload"]["intervals_below"], event["payload"]["intervals_outside"]) == (1, 1)


def _alerts_sent(context: ServiceContext) -> int:
    with context.engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT count(*) FROM alerts_sent")).scalar_one())
