"""Correlation ids and traces travel HTTP -> outbox -> relay -> Kafka headers -> consumer, through the real broker."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from kafka import KafkaProducer
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from statistics_manager_service import tracing
from statistics_manager_service.app import create_app
from statistics_manager_service.context import ServiceContext
from statistics_manager_service.storage.tables import ConsumptionCurve, Household
from statistics_manager_service.test.event_consumer.kafka_support import (
    debezium_payload,
    drain,
    producer,
    running_workers,
    wait_until,
)
from statistics_manager_service.test.support.kafka_broker import KafkaBroker
from statistics_manager_service.test.support.logs import JsonLines, json_logs
from statistics_manager_service.test.support.pipeline import envelope, reading
from statistics_manager_service.tokens import issue_token

START = dt.datetime(2026, 5, 4, tzinfo=dt.UTC)
UPSTREAM_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
UPSTREAM_SPAN_ID = 0x00F067AA0BA902B7
UPSTREAM_TRACEPARENT = f"00-{UPSTREAM_TRACE_ID:032x}-{UPSTREAM_SPAN_ID:016x}-01"
MOCK_CURVE = "/api/statistics/mock-consumption-curve-producer?user_id={}&start_date=2026-05-04T00:00:00Z&delivery_time=60"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, with the SDK keeping every finished span in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.install(None)
    provider.shutdown()


def _send(
    output: KafkaProducer, topic: str, key: str, value: bytes, headers: list[tuple[str, bytes]]
) -> None:
    output.send(topic, key=key.encode(), value=value, headers=headers).get(timeout=30)


def _register(output: KafkaProducer, context: ServiceContext, user_id: str) -> None:
    _send(
        output,
        context.settings.topic("user-account"),
        user_id,
        envelope("UserRegistered", {"user_id": user_id}),
        [],
    )
    wait_until(lambda: _household_exists(context, user_id), what=f"{user_id} registered")


def _household_exists(context: ServiceContext, user_id: str) -> bool:
    with context.engine.connect() as connection:
        statement = sa.select(sa.func.count()).select_from(Household).where(Household.user_id == user_id)
        return int(connection.execute(statement).scalar_one()) == 1


def _curve_points(context: ServiceContext, user_id: str) -> int:
    with context.engine.connect() as connection:
        statement = (
            sa.select(sa.func.count())
            .select_from(ConsumptionCurve)
            .where(ConsumptionCurve.user_id == user_id, ConsumptionCurve.kind == "forecast")
        )
        return int(connection.execute(statement).scalar_one())


def _request_mock_curve(context: ServiceContext, user_id: str, headers: dict[str, str]) -> None:
    app = create_app(context.settings, context=context)
    with app.test_client() as client:
        response = client.post(
            MOCK_CURVE.format(user_id),
            headers={"Authorization": "Bearer " + issue_token(context.settings, user_id=user_id), **headers},
        )
        assert response.status_code == 200


def _published(
    broker: KafkaBroker, context: ServiceContext, expected: int
) -> list[tuple[dict[str, Any], dict[str, bytes]]]:
    records = drain(broker, context.settings.topic("statistics"), expected=expected)
    return [(debezium_payload(record), dict(record.headers)) for record in records]


def _lines_with(logs: JsonLines, text: str) -> list[dict[str, Any]]:
    return [line for line in logs.all() if text in line["message"]]


def test_the_correlation_id_travels_with_events_and_marks_the_consumers_lines(
    kafka_ctx: ServiceContext, kafka_broker: KafkaBroker
) -> None:
    settings = kafka_ctx.settings
    users = ["corrhome01", "corrhome02", "corrhome03"]
    with json_logs() as logs, producer(kafka_broker) as output, running_workers(kafka_ctx):
        for user_id in users:
            _register(output, kafka_ctx, user_id)
        # A request's event carries its correlation id through the outbox and the relay.
        _request_mock_curve(kafka_ctx, users[0], {"X-Correlation-ID": "corr-http-1"})
        wait_until(lambda: _curve_points(kafka_ctx, users[0]) == 24, what="the mock curve stored")
        # A readings message's id goes on to the announcements its handling queues.
        readings = [reading(START + dt.timedelta(minutes=15 * i), 40.0 * i) for i in range(8)]
        _send(
            output,
            settings.topic("meter-readings"),
            users[0],
            envelope("MeterReadings", {"user_id": users[0], "source": "hub", "readings": readings}),
            [("X-Correlation-ID", b"corr-readings-1")],
        )
        published = _published(kafka_broker, kafka_ctx, expected=2)
        # The consumer's lines carry the id of the message they handle: from a header ...
        _send(
            output,
            settings.topic("user-account"),
            users[1],
            envelope("UserHardDeleted", {"user_id": users[1]}),
            [("correlation_id", b"corr-erase-1")],
        )
        wait_until(lambda: bool(_lines_with(logs, f"user {users[1]}")), what="the first erasure")
        # ... or from the envelope, when the producer put it there.
        erase = orjson.loads(envelope("UserHardDeleted", {"user_id": users[2]}))
        _send(
            output,
            settings.topic("user-account"),
            users[2],
            orjson.dumps({**erase, "correlationId": "corr-erase-2"}),
            [],
        )
        wait_until(lambda: bool(_lines_with(logs, f"user {users[2]}")), what="the second erasure")
        # A dead letter's line names its own message's id, whatever else its batch held.
        _send(
            output,
            settings.topic("meter-readings"),
            "x",
            b"{not json",
            [("X-Correlation-ID", b"corr-poison-1")],
        )
        drain(kafka_broker, settings.topic("statistics.dlq"), expected=1)
        wait_until(lambda: bool(_lines_with(logs, "dead-lettering")), what="the dead letter logged")

    by_type = {payload["eventType"]: headers for payload, headers in published}
    assert by_type["ComputeMockConsumptionCurveEvent"]["X-Correlation-ID"] == b"corr-http-1"
    assert by_type["StatisticsUpdated"]["X-Correlation-ID"] == b"corr-readings-1"
    assert all("traceparent" not in headers for _, headers in published)  # tracing is off
    (first,) = _lines_with(logs, f"erased every record of user {users[1]}")
    (second,) = _lines_with(logs, f"erased every record of user {users[2]}")
    (dead,) = _lines_with(logs, "dead-lettering")
    assert (first["correlation_id"], second["correlation_id"], dead["correlation_id"]) == (
        "corr-erase-1",
        "corr-erase-2",
        "corr-poison-1",
    )


def _finished(exporter: InMemorySpanExporter, kind: SpanKind, name_part: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.kind == kind and name_part in span.name]


def _parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_a_request_and_the_events_it_causes_are_one_trace(
    kafka_ctx: ServiceContext, kafka_broker: KafkaBroker, spans: InMemorySpanExporter
) -> None:
    settings = kafka_ctx.settings
    user_id = "tracehome1"
    statistics_topic = settings.topic("statistics")
    with producer(kafka_broker) as output, running_workers(kafka_ctx):
        _register(output, kafka_ctx, user_id)
        spans.clear()
        _request_mock_curve(
            kafka_ctx, user_id, {"X-Correlation-ID": str(uuid.uuid4()), "traceparent": UPSTREAM_TRACEPARENT}
        )
        wait_until(
            lambda: bool(_finished(spans, SpanKind.CONSUMER, statistics_topic)), what="the event consumed"
        )
    (server,) = _finished(spans, SpanKind.SERVER, "POST /api/statistics/mock-consumption-curve-producer")
    (publish,) = _finished(spans, SpanKind.PRODUCER, f"{statistics_topic} publish")
    (consume,) = _finished(spans, SpanKind.CONSUMER, statistics_topic)
    # The caller's trace goes on: request -> relay's publication -> consumer's batch.
    assert (
        server.context.trace_id == publish.context.trace_id == consume.context.trace_id == UPSTREAM_TRACE_ID
    )
    assert _parent_of(server) == UPSTREAM_SPAN_ID
    assert _parent_of(publish) == server.context.span_id
    assert _parent_of(consume) == publish.context.span_id
    assert server.attributes is not None and server.attributes["http.response.status_code"] == 200
    assert consume.attributes is not None and consume.attributes["messaging.batch.message_count"] == 1
    # The record on the broker names the publication's span as its parent.
    ((_, headers),) = _published(kafka_broker, kafka_ctx, expected=1)
    assert headers["traceparent"].decode() == f"00-{UPSTREAM_TRACE_ID:032x}-{publish.context.span_id:016x}-01"


def test_readings_are_traced_through_their_recomputation_and_announcements(
    kafka_ctx: ServiceContext, kafka_broker: KafkaBroker, spans: InMemorySpanExporter
) -> None:
    settings = kafka_ctx.settings
    user_id = "tracehome2"
    readings_topic = settings.topic("meter-readings")
    statistics_topic = settings.topic("statistics")
    readings = [reading(START + dt.timedelta(minutes=15 * i), 40.0 * i) for i in range(8)]
    with producer(kafka_broker) as output, running_workers(kafka_ctx):
        _register(output, kafka_ctx, user_id)
        spans.clear()
        _send(
            output,
            readings_topic,
            user_id,
            envelope("MeterReadings", {"user_id": user_id, "source": "hub", "readings": readings}),
            [("traceparent", UPSTREAM_TRACEPARENT.encode())],
        )
        wait_until(
            lambda: bool(_finished(spans, SpanKind.CONSUMER, statistics_topic)),
            what="the announcement consumed",
        )
    (consume_readings,) = _finished(spans, SpanKind.CONSUMER, readings_topic)
    (recompute,) = [span for span in spans.get_finished_spans() if span.name == "recompute"]
    publications = _finished(spans, SpanKind.PRODUCER, f"{statistics_topic} publish")
    consume_announcements = _finished(spans, SpanKind.CONSUMER, statistics_topic)
    assert _parent_of(consume_readings) == UPSTREAM_SPAN_ID
    assert _parent_of(recompute) == consume_readings.context.span_id
    assert recompute.attributes is not None and recompute.attributes["cause"] == "readings"
    assert publications and all(_parent_of(span) == consume_readings.context.span_id for span in publications)
    assert {_parent_of(span) for span in consume_announcements} <= {
        span.context.span_id for span in publications
    }
    every_span = [consume_readings, recompute, *publications, *consume_announcements]
    assert {span.context.trace_id for span in every_span} == {UPSTREAM_TRACE_ID}
