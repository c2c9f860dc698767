"""Dead letters the broker cannot take whole, through the real broker and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.test.event_consumer.kafka_support import (
    drain,
    publish,
    running_workers,
    wait_until,
)
from statistics_manager_service.test.support.kafka_broker import KafkaBroker
from statistics_manager_service.test.support.pipeline import envelope, reading
from statistics_manager_service.test.support.statistics import stored_reading_count

START = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
USER = "bigmsghome"
# Just under the producer's default max_request_size (1 MiB): the message fits, its dead letter
# (the message plus its reason in headers) does not.
INVALID_SIZE = 1024 * 1024 - 120


def _committed(broker: KafkaBroker, group_id: str, partition: TopicPartition) -> int | None:
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=group_id)
    try:
        offset: int | None = consumer.committed(partition)
        return offset
    finally:
        consumer.close(autocommit=False)


def test_an_invalid_message_too_large_to_dead_letter_whole_is_dead_lettered_truncated(
    kafka_ctx: ServiceContext, kafka_broker: KafkaBroker
) -> None:
    settings = kafka_ctx.settings
    topic = settings.topic("meter-readings")
    invalid = b"{" + b"x" * (INVALID_SIZE - 1)  # not JSON
    valid = [
        (
            USER,
            envelope(
                "MeterReadings",
                {
                    "user_id": USER,
                    "source": "hub",
                    "readings": [
                        reading(START + dt.timedelta(minutes=15 * (4 * n + i)), 100.0 * (4 * n + i))
                        for i in range(4)
                    ],
                },
            ),
        )
        for n in range(3)
    ]
    output = KafkaProducer(
        bootstrap_servers=kafka_broker.bootstrap_servers, acks="all", max_request_size=2 * 1024 * 1024
    )
    with output, running_workers(kafka_ctx):
        publish(output, topic, [(USER, invalid), *valid])
        wait_until(
            lambda: stored_reading_count(kafka_ctx) == 12, what="the valid readings after the invalid one"
        )
        dead = drain(kafka_broker, settings.topic("statistics.dlq"), expected=1)
        headers = dict(dead[0].headers)
        partition = TopicPartition(topic, int(headers["dlq.original.partition"]))
        wait_until(
            lambda: _committed(kafka_broker, settings.kafka_group_id, partition) == 4,
            what="the offsets committed past the invalid message and the readings",
        )
    assert len(dead) == 1
    record = dead[0]
    assert record.key == USER.encode()
    assert headers["dlq.original.topic"] == topic.encode()
    assert headers["dlq.original.offset"] == b"0"
    assert headers["dlq.original.size"] == str(INVALID_SIZE).encode()
    assert headers["dlq.truncated"] == b"true"
    assert headers["dlq.error.class"] == b"PoisonMessage"
    assert headers["dlq.error.message"].startswith(b"value is not JSON")
    assert record.value == invalid[:4096]
    assert stored_reading_count(kafka_ctx, user_id=USER) == 12
