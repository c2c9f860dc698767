"""Forecasts are fetched outside the batch's transaction: an unavailable forecast API pauses the
consumer and loses nothing; an unusable answer dead-letters its event with the reason."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.storage.tables import ConsumptionCurve, Household
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
from statistics_manager_service.test.support.pipeline import envelope

FLAKY = "flakyfc001"  # the forecast API answers 503 for a while, then the forecast
BLOATED = "bloatfc001"  # the forecast API answers a body past the limit
DAY = dt.date(2026, 5, 4)
MAX_BODY_BYTES = 4096
OUTAGE_CALLS = 5  # more than the attempts of one fetch: only a retry of the batch gets through


class ForecastStub:
    """A stand-in for the external forecast service (a third party we do not run)."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                user_id = self.path.split("user_id=")[1].split("&")[0]
                stub.calls[user_id] = stub.calls.get(user_id, 0) + 1
                if user_id == FLAKY and stub.calls[user_id] <= OUTAGE_CALLS:
                    self.send_response(503)
                    self.end_headers()
                    return
                start = dt.datetime.combine(DAY, dt.time(), dt.UTC) - dt.timedelta(hours=1)
                values = [
                    {"timestamp": (start + dt.timedelta(hours=h)).isoformat(), "energy_kwh": 0.5}
                    for h in range(24)
                ]
                document = {"values": values}
                if user_id == BLOATED:
                    document["padding"] = "x" * (2 * MAX_BODY_BYTES)
                body = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/forecast"


@pytest.fixture
def forecast_stub() -> Iterator[ForecastStub]:
    stub = ForecastStub()
    thread = threading.Thread(target=stub.server.serve_forever, daemon=True)
    thread.start()
    yield stub
    stub.server.shutdown()


def _count(context: ServiceContext, statement: sa.Select[tuple[int]]) -> int:
    with context.engine.connect() as connection:
        return int(connection.execute(statement).scalar_one())


def test_forecast_api_outage_pauses_and_an_oversized_body_is_dead_lettered(
    postgres_url: str, kafka_broker: KafkaBroker, forecast_stub: ForecastStub
) -> None:
    context = kafka_context(
        postgres_url,
        kafka_broker,
        forecast_api_url=forecast_stub.url,
        forecast_api_timeout_s=2.0,
        forecast_api_max_body_bytes=MAX_BODY_BYTES,
    )
    clear_tables(context.engine)
    settings = context.settings
    households = sa.select(sa.func.count()).select_from(Household)
    forecasts = (
        sa.select(sa.func.count())
        .select_from(ConsumptionCurve)
        .where(ConsumptionCurve.user_id == FLAKY, ConsumptionCurve.kind == "forecast")
    )
    try:
        with producer(kafka_broker) as output, running_workers(context):
            publish(
                output,
                settings.topic("user-account"),
                [(user, envelope("UserRegistered", {"user_id": user})) for user in (FLAKY, BLOATED)],
            )
            wait_until(lambda: _count(context, households) == 2, what="both households")
            publish(
                output,
                settings.topic("statistics"),
                [
                    (
                        user,
                        envelope("ForecastComputedEvent", {"user_id": user, "forecast_day": DAY.isoformat()}),
                    )
                    for user in (FLAKY, BLOATED)
                ],
            )
            wait_until(lambda: _count(context, forecasts) > 0, what="the forecast after the API recovered")
            # The other event may sit on another partition: wait for its dead letter before stopping.
            assert drain(kafka_broker, settings.topic("statistics.dlq"), expected=1, timeout_s=60.0)
        dead = drain(kafka_broker, settings.topic("statistics.dlq"), expected=2, timeout_s=5.0)
    finally:
        context.engine.dispose()
    assert forecast_stub.calls[FLAKY] > OUTAGE_CALLS
    assert [record.key for record in dead] == [BLOATED.encode()]
    headers = dict(dead[0].headers)
    assert headers["dlq.error.class"] == b"PoisonMessage"
    assert b"larger than FORECAST_API_MAX_BODY_BYTES (4096 bytes)" in headers["dlq.error.message"]
