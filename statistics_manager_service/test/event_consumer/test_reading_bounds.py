"""A message may not make the service interpolate over years: readings far from now or from a
household's history are dead-lettered with the reason, and the others are stored."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.storage.tables import ReadingDay, StatisticsPeriod
from statistics_manager_service.test.conftest import clear_tables
from statistics_manager_service.test.event_consumer.kafka_support import (
    drain,
    kafka_context,
    producer,
    publish,
    running_workers,
    wait_until,
)
from statistics_manager_service.test.support.kafka_broker import KafkaBroker
from statistics_manager_service.test.support.pipeline import envelope, meter_message, process, reading
from statistics_manager_service.test.support.statistics import stored_reading_count

RTC_RESET = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def _today() -> dt.datetime:
    now = dt.datetime.now(dt.UTC)
    return dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC)


def _day(start: dt.datetime, first_wh: float = 0.0) -> list[dict[str, object]]:
    return [reading(start + dt.timedelta(minutes=15 * i), first_wh + 25.0 * i) for i in range(96)]


def _daily_rows(context: ServiceContext, user_id: str) -> int:
    with context.engine.connect() as connection:
        statement = sa.select(sa.func.count()).where(
            StatisticsPeriod.user_id == user_id, StatisticsPeriod.granularity == "daily"
        )
        return int(connection.execute(statement).scalar_one())


def _day_rows(context: ServiceContext, user_id: str) -> int:
    with context.engine.connect() as connection:
        statement = sa.select(sa.func.count()).select_from(ReadingDay).where(ReadingDay.user_id == user_id)
        return int(connection.execute(statement).scalar_one())


@pytest.fixture
def kafka_ctx(postgres_url: str, kafka_broker: KafkaBroker) -> Iterator[ServiceContext]:
    context = kafka_context(postgres_url, kafka_broker, reading_max_gap_days=30)
    clear_tables(context.engine)
    yield context
    context.engine.dispose()


def test_a_clock_reset_goes_to_the_dead_letters_while_other_households_flow(
    kafka_ctx: ServiceContext, kafka_broker: KafkaBroker
) -> None:
    settings = kafka_ctx.settings
    yesterday = _today() - dt.timedelta(days=1)
    steady, other, reset = "steadyhome", "otherhome1", "rtcreset01"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    jump = yesterday - dt.timedelta(days=400)

    def readings_of(user_id: str, values: list[dict[str, object]]) -> tuple[str, bytes]:
        return user_id, envelope("MeterReadings", {"user_id": user_id, "source": "hub", "readings": values})

    with producer(kafka_broker) as output, running_workers(kafka_ctx):
        publish(
            output,
            settings.topic("meter-readings"),
            [
                readings_of(steady, _day(yesterday)),
                # The meter's clock fell back to 2000-01-01, then caught up: 26 years apart.
                readings_of(reset, [reading(RTC_RESET, 10.0), reading(now, 20.0)]),
                readings_of(steady, [reading(jump, 5.0)]),
                readings_of(other, _day(yesterday, 1000.0)),
            ],
        )
        wait_until(
            lambda: (
                stored_reading_count(kafka_ctx, user_id=steady) == 96
                and stored_reading_count(kafka_ctx, user_id=other) == 96
            ),
            what="the other households' readings stored",
        )
        dead = drain(kafka_broker, settings.topic("statistics.dlq"), expected=2)
    reasons = {record.key.decode(): dict(record.headers) for record in dead}
    assert set(reasons) == {reset, steady}
    assert {headers["dlq.error.class"] for headers in reasons.values()} == {b"ReadingOutOfBounds"}
    assert b"2000-01-01T00:00:00Z is older than READING_MAX_AGE_DAYS" in reasons[reset]["dlq.error.message"]
    assert b"more than READING_MAX_GAP_DAYS (30 days)" in reasons[steady]["dlq.error.message"]
    # Nothing of the refused messages was stored or recomputed: the days written stay those of
    # the good readings (a day, two where the last reading's bucket reaches midnight).
    assert _day_rows(kafka_ctx, reset) == 0 and _daily_rows(kafka_ctx, reset) == 0
    assert _day_rows(kafka_ctx, steady) == 1 and _daily_rows(kafka_ctx, steady) <= 2
    assert _daily_rows(kafka_ctx, other) <= 2


def test_readings_chained_within_the_gap_are_stored_and_a_jump_past_history_is_not(
    context: ServiceContext,
) -> None:
    context.settings = dataclasses.replace(context.settings, reading_max_gap_days=10)
    start = _today() - dt.timedelta(days=60)
    assert process(context, [meter_message("chainhome1", _day(start))]) == []
    # 8 days after the history, then 8 more: each step within the gap, in two messages of a batch.
    bridge = [reading(start + dt.timedelta(days=9), 5000.0)]
    beyond = [reading(start + dt.timedelta(days=17), 6000.0)]
    assert process(context, [meter_message("chainhome1", beyond), meter_message("chainhome1", bridge)]) == []
    assert stored_reading_count(context, user_id="chainhome1") == 98
    # 11 days past the newest reading: refused, and so is what only it would connect.
    far = meter_message("chainhome1", [reading(start + dt.timedelta(days=28), 7000.0)])
    farther = meter_message("chainhome1", [reading(start + dt.timedelta(days=35), 8000.0)])
    dead = process(context, [far, farther])
    assert [(d.message.offset, d.error_class) for d in dead] == [
        (far.offset, "ReadingOutOfBounds"),
        (farther.offset, "ReadingOutOfBounds"),
    ]
    assert "from the household's readings" in dead[0].reason
    assert stored_reading_count(context, user_id="chainhome1") == 98
