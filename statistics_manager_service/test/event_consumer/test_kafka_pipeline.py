"""The consumer and the outbox relay against a real Kafka-protocol broker and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from statistics_manager_service.app import create_app
from statistics_manager_service.context import ServiceContext
from statistics_manager_service.event_consumer import consumer as consumer_module
from statistics_manager_service.storage.tables import ConsumptionCurve, StatisticsPeriod
from statistics_manager_service.test.conftest import clear_tables
from statistics_manager_service.test.event_consumer.kafka_support import (
    debezium_payload,
    drain,
    kafka_context,
    producer,
    publish,
    running_workers,
    wait_until,
)
from statistics_manager_service.test.support.kafka_broker import KafkaBroker
from statistics_manager_service.test.support.pipeline import envelope, reading
from statistics_manager_service.test.support.statistics import stored_reading_count
from statistics_manager_service.tokens import issue_token

START = dt.datetime(2026, 5, 4, tzinfo=dt.UTC)


def _count(context: ServiceContext, statement: sa.Select[tuple[int]]) -> int:
    with context.engine.connect() as connection:
        return int(connection.execute(statement).scalar_one())


def test_events_flow_in_and_announcements_and_dead_letters_flow_out(
    kafka_ctx: ServiceContext, kafka_broker: KafkaBroker
) -> None:
    settings = kafka_ctx.settings
    users = [f"kafkahome{i}" for i in range(4)]
    readings = {
        u: [reading(START + dt.timedelta(minutes=15 * i), 40.0 * i + n) for i in range(96)]
        for n, u in enumerate(users)
    }
    with producer(kafka_broker) as output, running_workers(kafka_ctx):
        publish(
            output,
            settings.topic("user-account"),
            [
                (u, envelope("UserRegistered", {"user_id": u, "tarif_type": "bi-hourly", "country": "PT"}))
                for u in users
            ]
            + [("x", envelope("UserConfirmed", {"user_id": users[0]}))],
        )
        poison = [
            (users[0], b"{broken json"),
            (users[1], envelope("MeterReadings", {"user_id": users[1], "source": "hub", "readings": []})),
        ]
        good = [
            (u, envelope("MeterReadings", {"user_id": u, "source": "hub", "readings": chunk}))
            for u in users
            for chunk in (readings[u][:48], readings[u][48:])
        ]
        publish(
            output, settings.topic("meter-readings"), good[:4] + poison + good[4:] + good[:2]
        )  # with duplicates
        wait_until(
            lambda: stored_reading_count(kafka_ctx) == 4 * 96,
            what="every reading stored",
        )
        dead = drain(kafka_broker, settings.topic("statistics.dlq"), expected=2)
        assert sorted(r.value for r in dead) == sorted(value for _, value in poison)
        for record in dead:
            headers = dict(record.headers)
            assert headers["dlq.original.topic"] == settings.topic("meter-readings").encode()
            assert int(headers["dlq.original.offset"]) >= 0
            assert headers["dlq.error.class"] == b"PoisonMessage"
            assert headers["dlq.error.message"]
            assert record.key in (users[0].encode(), users[1].encode())

        # A producer endpoint queues its event in the outbox; the relay publishes it and the
        # consumer, reading it back from the broker, stores the mock curve.
        app = create_app(settings, context=kafka_ctx)
        with app.test_client() as client:
            response = client.post(
                f"/api/statistics/mock-consumption-curve-producer?user_id={users[2]}&start_date=2026-05-04T00:00:00Z&delivery_time=60",
                headers={
                    "X-Correlation-ID": str(uuid.uuid4()),
                    "Authorization": "Bearer " + issue_token(settings, user_id=users[2]),
                },
            )
            assert response.status_code == 200
        wait_until(
            lambda: (
                _count(
                    kafka_ctx,
                    sa.select(sa.func.count())
                    .select_from(ConsumptionCurve)
                    .where(ConsumptionCurve.kind == "forecast"),
                )
                == 24
            ),
            what="the mock curve stored through the broker",
        )
    announced = drain(kafka_broker, settings.topic("statistics"), expected=5)
    payloads = [debezium_payload(record) for record in announced]
    assert {p["eventType"] for p in payloads} >= {"StatisticsUpdated", "ComputeMockConsumptionCurveEvent"}
    updated = [p for p in payloads if p["eventType"] == "StatisticsUpdated"]
    assert {p["aggregateId"] for p in updated} <= set(users)
    assert all(p["payload"]["granularity"] == "15_mins" for p in updated)
    daily = _count(
        kafka_ctx,
        sa.select(sa.func.count())
        .select_from(StatisticsPeriod)
        .where(StatisticsPeriod.granularity == "daily"),
    )
    assert daily >= 4


def _batches_handled() -> float:
    return REGISTRY.get_sample_value("statistics_batch_processing_seconds_count") or 0.0


@pytest.mark.parametrize(
    ("batch_max_bytes", "max_records"), [(0, 20_000), (8 * 1024 * 1024, 20_000), (8 * 1024 * 1024, 250)]
)
def test_small_messages_are_gathered_into_batches_by_size(
    postgres_url: str, kafka_broker: KafkaBroker, batch_max_bytes: int, max_records: int, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Messages of one reading are gathered beyond one poll's records, up to KAFKA_BATCH_MAX_BYTES."""
    monkeypatch.setattr(consumer_module, "MAX_GATHERED_RECORDS", max_records)
    context = kafka_context(
        postgres_url, kafka_broker, kafka_max_poll_records=100, kafka_batch_max_bytes=batch_max_bytes
    )
    clear_tables(context.engine)
    users = [f"smallmsg{i:02d}" for i in range(4)]
    messages = [
        (
            u,
            envelope(
                "MeterReadings",
                {
                    "user_id": u,
                    "source": "hub",
                    "readings": [reading(START + dt.timedelta(minutes=15 * i), 25.0 * i)],
                },
            ),
        )
        for i in range(300)
        for u in users
    ]
    try:
        with producer(kafka_broker) as output:
            publish(output, context.settings.topic("meter-readings"), messages)
        before = _batches_handled()
        with running_workers(context):
            wait_until(
                lambda: stored_reading_count(context) == len(messages),
                what="every reading stored",
            )
            wait_until(lambda: _batches_handled() > before, what="the last batch to be counted")
        batches = _batches_handled() - before
        with context.engine.connect() as connection:
            daily = connection.execute(
                sa.select(sa.func.sum(StatisticsPeriod.consumption_kwh)).where(
                    StatisticsPeriod.granularity == "daily"
                )
            ).scalar_one()
        assert daily == pytest.approx(4 * 299 * 25.0 / 1000)  # each register's rise, in kWh
        if batch_max_bytes == 0:
            assert batches >= len(messages) / 100  # one poll per batch
        else:
            assert batches < len(messages) / 100  # some batch held more than one poll
            assert batches >= len(messages) / (max_records + 100)  # none more than the cap and a poll
    finally:
        context.dispose()
