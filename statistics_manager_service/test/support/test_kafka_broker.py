"""The test Kafka broker works with kafka-python: keys, headers, group commits, restarts, external mode."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from statistics_manager_service.test.support.kafka_broker import (
    EXTERNAL_ENV_VAR,
    FAST_GROUP_CONSUMER_CONFIG,
    BrokerControlUnavailable,
    KafkaBroker,
    KafkaBrokerError,
    probe_metadata,
    unique_name,
)


def _poll(consumer: KafkaConsumer, count: int, timeout: float = 20.0, **poll: Any) -> list[ConsumerRecord]:
    """Poll until `count` records arrived (or fail after `timeout` seconds)."""
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    while len(records) < count:
        assert time.monotonic() < deadline, f"got {len(records)} of {count} records in {timeout}s"
        for batch in consumer.poll(timeout_ms=200, **poll).values():
            records.extend(batch)
    return records


def _group_consumer(broker: KafkaBroker, group: str, topic: str) -> KafkaConsumer:
    """A manually committing group consumer subscribed to `topic`."""
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **FAST_GROUP_CONSUMER_CONFIG,
    )
    consumer.subscribe([topic])
    return consumer


def test_keyed_records_keep_partition_order_and_headers(kafka_broker: KafkaBroker) -> None:
    """Records with one key land in one partition, in order, with their headers; end offsets add up."""
    topic = unique_name("keys")
    kafka_broker.create_topics([topic], partitions=3)
    kafka_broker.create_topics([topic], partitions=3)  # already there: fine
    # batch_size=0: one record per batch, so tansu's end offsets are exact (see module docs).
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, batch_size=0)
    keys = [b"meter-a", b"meter-b", b"meter-c"]
    for number in range(12):
        producer.send(
            topic,
            key=keys[number % 3],
            value=f"reading-{number}".encode(),
            headers=[("event-type", b"reading"), ("seq", str(number).encode())],
        )
    producer.flush()
    producer.close()

    partitions = [TopicPartition(topic, index) for index in range(3)]
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap_servers, enable_auto_commit=False)
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    records = _poll(consumer, 12)
    assert sum(consumer.end_offsets(partitions).values()) == 12
    consumer.close()

    by_key: dict[bytes, list[ConsumerRecord]] = {}
    for record in records:
        by_key.setdefault(record.key, []).append(record)
    assert sorted(by_key) == keys
    for key, keyed in by_key.items():
        assert len({record.partition for record in keyed}) == 1, key
        sequence = [int(dict(record.headers)["seq"]) for record in sorted(keyed, key=lambda r: r.offset)]
        assert sequence == sorted(sequence)
    first = next(record for record in records if record.value == b"reading-0")
    assert first.headers == [("event-type", b"reading"), ("seq", b"0")]


def test_committed_offsets_survive_a_consumer_restart(kafka_broker: KafkaBroker) -> None:
    """A new consumer in the group starts exactly after what the previous one committed."""
    topic, group = unique_name("commits"), unique_name("group")
    kafka_broker.create_topics([topic], partitions=2)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers)
    for number in range(6):
        producer.send(topic, key=f"k{number % 2}".encode(), value=str(number).encode())
    producer.flush()
    producer.close()

    first = _group_consumer(kafka_broker, group, topic)
    processed = _poll(first, 1, max_records=3)
    first.commit()  # commits the positions after the returned records only
    first.close()

    second = _group_consumer(kafka_broker, group, topic)
    rest = _poll(second, 6 - len(processed))
    time.sleep(0.5)
    rest.extend(record for batch in second.poll(timeout_ms=500).values() for record in batch)
    second.commit()
    partitions = [TopicPartition(topic, index) for index in range(2)]
    committed = [second.committed(tp) for tp in partitions]
    second.close()

    values = sorted(int(record.value) for record in processed + rest)
    assert values == list(range(6)), "each record exactly once across the restart"
    assert sum(committed) == 6


def test_broker_restart_keeps_topics_records_and_offsets(
    kafka_broker_factory: Callable[..., KafkaBroker],
) -> None:
    """Across a broker outage: topics, records and commits stay; live clients carry on."""
    broker = kafka_broker_factory()
    broker.require_control()
    topic, group = unique_name("outage"), unique_name("group")
    broker.create_topics([topic], partitions=2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, batch_size=0)
    for number in range(4):
        producer.send(
            topic, key=f"k{number}".encode(), value=f"before-{number}".encode(), headers=[("h", b"1")]
        )
    producer.flush()
    consumer = _group_consumer(broker, group, topic)
    assert len(_poll(consumer, 4)) == 4
    consumer.commit()

    port = broker.port
    with broker.outage():
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        pending = [producer.send(topic, key=b"k0", value=f"during-{n}".encode()) for n in range(2)]
    assert broker.port == port

    for future in pending:
        future.get(timeout=30)  # the producer buffered and retried until the broker was back
    resumed = _poll(consumer, 2)
    assert sorted(record.value for record in resumed) == [b"during-0", b"during-1"]
    consumer.commit()
    consumer.close()
    producer.close()

    broker.restart()  # a second, graceful restart: everything is still there
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    assert topic in admin.list_topics()
    offsets = admin.list_group_offsets(group)[group]
    admin.close()
    assert sum(meta.offset for meta in offsets.values()) == 6
    reader = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
    partitions = [TopicPartition(topic, index) for index in range(2)]
    reader.assign(partitions)
    reader.seek_to_beginning()
    again = _poll(reader, 6)
    reader.close()
    assert sorted(record.value for record in again) == sorted(
        [f"before-{n}".encode() for n in range(4)] + [b"during-0", b"during-1"]
    )
    assert all(record.headers == [("h", b"1")] for record in again if record.value.startswith(b"before"))


def test_external_broker_is_used_and_not_controlled(monkeypatch: pytest.MonkeyPatch) -> None:
    """With KAFKA_BOOTSTRAP_SERVERS set nothing is started, and outage tests skip."""
    monkeypatch.setenv(EXTERNAL_ENV_VAR, "kafka.example:19092")
    broker = KafkaBroker.from_environment()
    assert broker.external and not broker.controllable and not broker.durable
    assert broker.bootstrap_servers == "kafka.example:19092"
    with pytest.raises(BrokerControlUnavailable):
        broker.stop()
    with pytest.raises(pytest.skip.Exception, match=EXTERNAL_ENV_VAR):
        broker.require_control()
    broker.close()


def test_failed_start_reports_the_log_tail(tmp_path: Path) -> None:
    """A broker that dies while starting fails fast with its own output in the error."""
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'fake tansu: cannot bind' >&2\nexit 3\n")
    fake.chmod(0o755)
    broker = KafkaBroker(storage="memory", binary=str(fake), startup_timeout=5)
    started = time.monotonic()
    with pytest.raises(KafkaBrokerError, match="fake tansu: cannot bind"):
        broker.start()
    assert time.monotonic() - started < 3
    broker.close()


def test_session_broker_answers_metadata(kafka_broker: KafkaBroker) -> None:
    """The shared broker answers a raw Metadata request with its advertised address."""
    host, _, port = kafka_broker.bootstrap_servers.split(",")[0].rpartition(":")
    brokers = probe_metadata(host, int(port))
    assert brokers and brokers[0][2] == int(port)
