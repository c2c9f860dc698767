"""Pytest fixtures around the real Kafka-protocol broker (tansu, or KAFKA_BOOTSTRAP_SERVERS)."""

from statistics_manager_service.test.support.kafka_broker import kafka_broker, kafka_broker_factory

__all__ = ["kafka_broker", "kafka_broker_factory"]
