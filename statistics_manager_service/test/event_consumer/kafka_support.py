"""Helpers for tests that run the consumer and relay against the real broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer

from statistics_manager_service.background import Background
from statistics_manager_service.context import ServiceContext, build_context
from statistics_manager_service.event_consumer.consumer import CONSUMED_TOPICS, DLQ_TOPIC
from statistics_manager_service.event_consumer.runner import start_workers
from statistics_manager_service.test.conftest import make_settings
from statistics_manager_service.test.support.kafka_broker import KafkaBroker

PARTITIONS = 3


def kafka_context(database_url: str, broker: KafkaBroker, **overrides: Any) -> ServiceContext:
    """A context on `database_url` with its own topic prefix and consumer group on `broker`."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    settings = make_settings(
        database_url,
        kafka_bootstrap_servers=broker.bootstrap_servers,
        kafka_topic_prefix=prefix,
        kafka_group_id=f"group-{prefix}",
        **{"kafka_max_poll_records": 200, **overrides},
    )
    broker.create_topics([prefix + name for name in (*CONSUMED_TOPICS, DLQ_TOPIC)], partitions=PARTITIONS)
    return build_context(settings)


@contextmanager
def running_workers(context: ServiceContext) -> Iterator[Background]:
    """Run the consumer and relay threads for the duration of the block."""
    background = Background()
    start_workers(context, background)
    try:
        yield background
    finally:
        background.stop()


def producer(broker: KafkaBroker) -> KafkaProducer:
    """A producer for test input."""
    return KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all", linger_ms=5)


def publish(producer_: KafkaProducer, topic: str, values: list[tuple[str | None, bytes]]) -> None:
    """Send (key, value) pairs and wait for the broker to acknowledge them."""
    futures = [producer_.send(topic, key=key.encode() if key else None, value=value) for key, value in values]
    producer_.flush()
    for future in futures:
        future.get(timeout=30)


def drain(broker: KafkaBroker, topic: str, expected: int, timeout_s: float = 60.0) -> list[Any]:
    """Read `expected` records from the start of a topic (no group)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


def wait_until(condition: Callable[[], bool], timeout_s: float = 90.0, what: str = "condition") -> None:
    """Poll `condition` until it holds; fail with `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def debezium_payload(record: Any) -> dict[str, Any]:
    """Decode a record published by the outbox relay."""
    envelope: dict[str, Any] = orjson.loads(record.value)
    inner: dict[str, Any] = envelope["payload"]
    return {**inner, "payload": orjson.loads(inner["payload"])}
