"""The built-in baseline forecast, end to end: readings in through the broker, the forecast event out
through the outbox and back in, the stored curve served with its origin."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer

from statistics_manager_service.app import create_app
from statistics_manager_service.context import ServiceContext
from statistics_manager_service.storage.tables import ConsumptionCurve
from statistics_manager_service.test.event_consumer.kafka_support import (
    debezium_payload,
    producer,
    publish,
    running_workers,
    wait_until,
)
from statistics_manager_service.test.support.kafka_broker import KafkaBroker
from statistics_manager_service.test.support.pipeline import envelope, reading
from statistics_manager_service.test.support.statistics import stored_reading_count
from statistics_manager_service.tokens import issue_token

USER = "baseline01"
ZONE = ZoneInfo("Europe/Lisbon")
FIRST_DAY = dt.date(2026, 2, 13)  # five weeks of readings, all in winter time
DAYS = 35
QUARTER = dt.timedelta(minutes=15)


def _consumed_wh(day_index: int, quarter: int) -> int:
    """What the household uses in a quarter hour: differs by week, weekday and time of day."""
    week, weekday = divmod(day_index, 7)
    return 20 + 10 * week + 3 * weekday + quarter % 7 + (40 if 68 <= quarter < 88 else 0)


def _readings() -> list[dict[str, object]]:
    """A register reading at every quarter-hour boundary from the first local midnight to the last."""
    start = dt.datetime.combine(FIRST_DAY, dt.time(), ZONE)
    register_wh = 0
    readings = [reading(start, 0.0)]
    for day_index in range(DAYS):
        for quarter in range(96):
            register_wh += _consumed_wh(day_index, quarter)
            readings.append(reading(start + (day_index * 96 + quarter + 1) * QUARTER, float(register_wh)))
    return readings


def _expected_kwh(day: dt.date) -> list[float]:
    """Each quarter hour's mean over the same weekdays of the four weeks before `day` that have data."""
    expected = []
    for quarter in range(96):
        values = [
            _consumed_wh((past - FIRST_DAY).days, quarter) / 1000
            for past in (day - dt.timedelta(weeks=k) for k in (1, 2, 3, 4))
            if 0 <= (past - FIRST_DAY).days < DAYS
        ]
        expected.append(sum(values) / len(values))
    return expected


def _curve_rows(context: ServiceContext) -> int:
    with context.engine.connect() as connection:
        return int(
            connection.execute(
                sa.select(sa.func.count())
                .select_from(ConsumptionCurve)
                .where(ConsumptionCurve.kind == "forecast", ConsumptionCurve.origin == "baseline")
            ).scalar_one()
        )


def _published_forecasts(broker: KafkaBroker, topic: str, expected: int) -> list[dict[str, Any]]:
    """Read the topic from the start until `expected` forecast events have been seen."""
    consumer = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap_servers, auto_offset_reset="earliest")
    forecasts: list[dict[str, Any]] = []
    try:

        def seen() -> bool:
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    event = debezium_payload(record)
                    if event["eventType"] == "ForecastComputedEvent":
                        forecasts.append(event["payload"])
            return len(forecasts) >= expected

        wait_until(seen, what="the forecast events published")
    finally:
        consumer.close()
    return forecasts


def test_the_baseline_is_each_quarter_hours_mean_over_the_previous_same_weekdays(
    kafka_ctx: ServiceContext, kafka_broker: KafkaBroker
) -> None:
    settings = kafka_ctx.settings
    assert settings.forecast_api_url is None
    readings = _readings()
    full_history = FIRST_DAY + dt.timedelta(days=DAYS)  # the day after the five weeks
    two_weeks = FIRST_DAY + dt.timedelta(days=14)  # only two earlier same weekdays have readings
    no_history = FIRST_DAY + dt.timedelta(days=3)
    token = issue_token(settings, user_id=USER)

    def headers() -> dict[str, str]:
        return {"X-Correlation-ID": str(uuid.uuid4()), "Authorization": f"Bearer {token}"}

    with producer(kafka_broker) as output, running_workers(kafka_ctx):
        publish(
            output,
            settings.topic("user-account"),
            [(USER, envelope("UserRegistered", {"user_id": USER, "tarif_type": "simple", "country": "PT"}))],
        )
        publish(
            output,
            settings.topic("meter-readings"),
            [
                (USER, envelope("MeterReadings", {"user_id": USER, "source": "hub", "readings": chunk}))
                for chunk in (readings[i : i + 500] for i in range(0, len(readings), 500))
            ],
        )
        wait_until(lambda: stored_reading_count(kafka_ctx) == len(readings), what="every reading stored")

        app = create_app(settings, context=kafka_ctx, validate_responses=True)
        with app.test_client() as client:
            for day in (full_history, two_weeks):
                response = client.post(
                    f"/api/statistics/trigger-computed-forecast-producer?user_id={USER}&forecast_day={day}",
                    headers=headers(),
                )
                assert response.status_code == 200, response.text
                assert response.json()["event_type"] == "ForecastComputedEvent"
            refused = client.post(
                f"/api/statistics/trigger-computed-forecast-producer?user_id={USER}&forecast_day={no_history}",
                headers=headers(),
            )
            assert refused.status_code == 422
            assert refused.json()["error"].startswith(f'user "{USER}" has no consumption on the 4 Mondays')

            wait_until(lambda: _curve_rows(kafka_ctx) == 2 * 96, what="both forecasts stored via the broker")
            for day in (full_history, two_weeks):
                start = dt.datetime.combine(day, dt.time(), ZONE).astimezone(dt.UTC)
                query = (
                    f"/api/statistics/power-consumed-real?user_id={USER}&group_by=15_mins"
                    f"&start_date={start:%Y-%m-%dT%H:%M:%SZ}&end_date={start + dt.timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}"
                )
                response = client.get(query, headers=headers())
                assert response.status_code == 200, response.text
                forecast = response.json()[0]["forecast"]
                assert [item["origin"] for item in forecast] == ["baseline"] * 96
                assert [item["timestamp"] for item in forecast] == [
                    (start + q * QUARTER).astimezone(ZONE).isoformat() for q in range(96)
                ]
                assert [item["energy"] for item in forecast] == pytest.approx(_expected_kwh(day), abs=1e-6)

    forecasts = _published_forecasts(kafka_broker, settings.topic("statistics"), expected=2)
    assert sorted(p["forecast_day"] for p in forecasts) == [two_weeks.isoformat(), full_history.isoformat()]
    assert {p["origin"] for p in forecasts} == {"baseline"}
    assert sorted(p["history_weeks"] for p in forecasts) == [2, 4]
