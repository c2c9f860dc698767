"""Two relays started at once on PostgreSQL publish one household's events in order."""

from __future__ import annotations

import threading
from collections.abc import Callable

import sqlalchemy as sa
from kafka import KafkaProducer

from statistics_manager_service.background import Background
from statistics_manager_service.context import ServiceContext
from statistics_manager_service.event_producers.outbox import NewEvent, add_events
from statistics_manager_service.event_producers.relay import OutboxRelay, kafka_publisher
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.tables import OutboxEvent
from statistics_manager_service.test.event_consumer.kafka_support import (
    debezium_payload,
    drain,
    wait_until,
)
from statistics_manager_service.test.support.kafka_broker import KafkaBroker

USER = "orderhome1"
EVENTS = 1200
BATCH = 40  # many batches, for two relays to race over


def _outbox_rows(context: ServiceContext) -> int:
    with context.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(OutboxEvent)).scalar_one())


def test_two_relays_started_at_once_publish_a_households_events_in_order(
    kafka_ctx: ServiceContext, kafka_broker: KafkaBroker
) -> None:
    settings = kafka_ctx.settings
    with session_scope(kafka_ctx.session_factory) as session:
        add_events(
            session, [NewEvent("StatisticsUpdated", USER, {"user_id": USER, "n": n}) for n in range(EVENTS)]
        )
    producers = [
        KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, acks="all") for _ in range(2)
    ]
    relays = [
        OutboxRelay(kafka_ctx.session_factory, kafka_publisher(output, settings.kafka_topic_prefix), BATCH)
        for output in producers
    ]
    start = threading.Barrier(len(relays))

    def run(relay: OutboxRelay) -> Callable[[threading.Event], None]:
        def relay_after_barrier(stop: threading.Event) -> None:
            start.wait()
            relay.run(stop)

        return relay_after_barrier

    background = Background()
    try:
        for number, relay in enumerate(relays):
            background.spawn(f"relay-{number}", run(relay))
        wait_until(lambda: _outbox_rows(kafka_ctx) == 0, what="every event published")
    finally:
        background.stop()
        for output in producers:
            output.close()

    records = drain(kafka_broker, settings.topic("statistics"), expected=EVENTS)
    assert len(records) == EVENTS
    assert len({record.partition for record in records}) == 1
    published = [
        debezium_payload(record)["payload"]["n"] for record in sorted(records, key=lambda r: r.offset)
    ]
    assert published == list(range(EVENTS))
