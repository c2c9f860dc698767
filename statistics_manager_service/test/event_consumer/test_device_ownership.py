"""Readings whose device belongs to another household, and devices moving, through the real broker."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from prometheus_client import REGISTRY

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.storage.tables import DeviceMapping
from statistics_manager_service.test.event_consumer.kafka_support import (
    drain,
    producer,
    publish,
    running_workers,
    wait_until,
)
from statistics_manager_service.test.support.kafka_broker import KafkaBroker
from statistics_manager_service.test.support.pipeline import envelope, reading
from statistics_manager_service.test.support.statistics import stored_reading_count

START = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
FIRST, SECOND = "devhome001", "devhome002"
DONGLE = "dongle-key-0001"


def _owner(context: ServiceContext) -> str | None:
    with context.engine.connect() as connection:
        statement = sa.select(DeviceMapping.user_id).where(DeviceMapping.device_id == DONGLE)
        return connection.execute(statement).scalar_one_or_none()


def _moves() -> float:
    return REGISTRY.get_sample_value("statistics_device_moves_total") or 0.0


def _readings(user_id: str, first: int) -> bytes:
    at = [START + dt.timedelta(minutes=15 * i) for i in range(first, first + 4)]
    payload = {
        "user_id": user_id,
        "device_id": DONGLE,
        "source": "dongle",
        "readings": [reading(instant, 50.0 * i) for i, instant in enumerate(at, start=first)],
    }
    return envelope("MeterReadings", payload)


def test_readings_of_another_households_device_are_dead_lettered_and_a_device_move_is_counted(
    kafka_ctx: ServiceContext, kafka_broker: KafkaBroker
) -> None:
    settings = kafka_ctx.settings
    moves_before = _moves()
    with producer(kafka_broker) as output, running_workers(kafka_ctx):
        publish(
            output,
            settings.topic("user-account"),
            [
                (FIRST, envelope("UserRegistered", {"user_id": FIRST, "api_key": DONGLE, "country": "PT"})),
                (SECOND, envelope("UserRegistered", {"user_id": SECOND, "country": "PT"})),
            ],
        )
        wait_until(lambda: _owner(kafka_ctx) == FIRST, what="the dongle mapped to the first household")

        # The second household claims the first one's dongle: refused, whatever else flows.
        publish(
            output,
            settings.topic("meter-readings"),
            [(SECOND, _readings(SECOND, 0)), (FIRST, _readings(FIRST, 0))],
        )
        dead = drain(kafka_broker, settings.topic("statistics.dlq"), expected=1)
        wait_until(
            lambda: stored_reading_count(kafka_ctx, user_id=FIRST) == 4, what="the first household's readings"
        )
        assert _moves() == moves_before

        # The account manager moves the dongle to the second household: logged, counted, obeyed.
        publish(
            output,
            settings.topic("user-account"),
            [(SECOND, envelope("UserUpdatedDongleApiKey", {"user_id": SECOND, "api_key": DONGLE}))],
        )
        wait_until(lambda: _owner(kafka_ctx) == SECOND, what="the dongle moved to the second household")
        publish(output, settings.topic("meter-readings"), [(SECOND, _readings(SECOND, 4))])
        wait_until(
            lambda: stored_reading_count(kafka_ctx, user_id=SECOND) == 4,
            what="the second household's readings",
        )

    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert headers["dlq.error.class"] == b"DeviceMismatch"
    assert headers["dlq.error.message"] == (
        f"device id {DONGLE!r} is mapped to another household than user {SECOND}".encode()
    )
    assert dead[0].key == SECOND.encode()
    assert stored_reading_count(kafka_ctx, user_id=FIRST) == 4
    assert _moves() - moves_before == 1
    assert (
        REGISTRY.get_sample_value(
            "statistics_dead_lettered_total",
            {"topic": settings.topic("meter-readings"), "error": "DeviceMismatch"},
        )
        == 1
    )
