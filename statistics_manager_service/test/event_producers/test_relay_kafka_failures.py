"""The Kafka relay sets aside an outbox event the broker can never take, through the real broker."""

from __future__ import annotations

import sqlalchemy as sa

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.event_producers.outbox import NewEvent, add_events
from statistics_manager_service.event_producers.relay import MAX_PUBLISH_ATTEMPTS
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.tables import OutboxEvent
from statistics_manager_service.test.event_consumer.kafka_support import (
    debezium_payload,
    drain,
    running_workers,
    wait_until,
)
from statistics_manager_service.test.support.kafka_broker import KafkaBroker

USER = "bigevthome"


def _rows(context: ServiceContext) -> list[tuple[str, str, int, str | None]]:
    with context.engine.connect() as connection:
        statement = sa.select(
            OutboxEvent.type, OutboxEvent.status, OutboxEvent.attempts, OutboxEvent.failed_reason
        ).order_by(OutboxEvent.seq)
        return [tuple(row) for row in connection.execute(statement)]  # type: ignore[misc]


def test_an_outbox_event_too_large_for_the_producer_is_kept_as_failed_and_the_others_are_published(
    kafka_ctx: ServiceContext, kafka_broker: KafkaBroker
) -> None:
    settings = kafka_ctx.settings
    oversized = {"user_id": USER, "values": "x" * settings.kafka_max_request_size}
    with session_scope(kafka_ctx.session_factory) as session:
        add_events(
            session,
            [
                NewEvent("StatisticsUpdated", USER, {"user_id": USER, "n": 1}),
                NewEvent("ForecastComputedEvent", USER, oversized),
                NewEvent("StatisticsUpdated", USER, {"user_id": USER, "n": 2}),
            ],
        )
    with running_workers(kafka_ctx):
        wait_until(
            lambda: [row[1] for row in _rows(kafka_ctx)] == ["failed"], what="the oversized event failed"
        )
        published = drain(kafka_broker, settings.topic("statistics"), expected=3, timeout_s=5)
    [(event_type, _, attempts, reason)] = _rows(kafka_ctx)
    assert (event_type, attempts) == ("ForecastComputedEvent", MAX_PUBLISH_ATTEMPTS)
    assert reason is not None and reason.startswith("MessageSizeTooLargeError")
    assert [debezium_payload(record)["payload"]["n"] for record in published] == [1, 2]
