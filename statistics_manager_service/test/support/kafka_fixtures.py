"""Pytest fixtures around the real Kafka-protocol broker (tansu, or KAFKA_BOOTSTRAP_SERVERS)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.test.conftest import clear_tables
from statistics_manager_service.test.event_consumer.kafka_support import kafka_context
from statistics_manager_service.test.support.kafka_broker import (
    KafkaBroker,
    kafka_broker,
    kafka_broker_factory,
)

__all__ = ["kafka_broker", "kafka_broker_factory", "kafka_ctx"]


@pytest.fixture
def kafka_ctx(postgres_url: str, kafka_broker: KafkaBroker) -> Iterator[ServiceContext]:
    """A PostgreSQL context on empty tables, wired to the broker with private topics and group."""
    context = kafka_context(postgres_url, kafka_broker)
    clear_tables(context.engine)
    yield context
    context.engine.dispose()
