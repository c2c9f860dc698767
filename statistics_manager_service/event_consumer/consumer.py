"""The consumer loop: poll a batch, handle it in one transaction, dead-letter, then commit offsets."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from statistics_manager_service import metrics
from statistics_manager_service.event_consumer.processor import (
    BatchProcessor,
    DeadLetter,
    Message,
    TransientFailure,
)

if TYPE_CHECKING:
    from statistics_manager_service.app import ServiceContext

logger = logging.getLogger(__name__)

CONSUMED_TOPICS = ("meter-readings", "user-account", "grid-signals", "statistics")
DLQ_TOPIC = "statistics.dlq"
MAX_BACKOFF_S = 30.0
LAG_REFRESH_S = 5.0


def dead_letter_record(dead: DeadLetter) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """Return the key, value and headers of a dead-letter message: original bytes, reason in headers."""
    message = dead.message
    headers = [(k, v) for k, v in message.headers if v is not None and not k.startswith("dlq.")]
    headers += [
        ("dlq.original.topic", message.topic.encode()),
        ("dlq.original.partition", str(message.partition).encode()),
        ("dlq.original.offset", str(message.offset).encode()),
        ("dlq.error.class", dead.error_class.encode()),
        ("dlq.error.message", dead.reason.encode("utf-8", errors="replace")[:4000]),
    ]
    return message.key, message.value, headers


class Backoff:
    """Exponential backoff that a stop request interrupts."""

    def __init__(self, stop: threading.Event, first_s: float = 0.5, max_s: float = MAX_BACKOFF_S) -> None:
        self.stop = stop
        self.first_s = first_s
        self.max_s = max_s
        self.current_s = first_s

    def wait(self) -> None:
        """Sleep the current delay (or until stopped) and double it."""
        self.stop.wait(self.next_delay())

    def next_delay(self) -> float:
        """Return the delay to wait now, and double the next one."""
        delay = self.current_s
        self.current_s = min(self.current_s * 2, self.max_s)
        return delay

    def reset(self) -> None:
        """Start again from the first delay."""
        self.current_s = self.first_s


class EventConsumer:
    """Consume the service's topics with effectively-once processing."""

    def __init__(self, context: ServiceContext, processor: BatchProcessor) -> None:
        self.context = context
        self.settings = context.settings
        self.processor = processor
        self.topics = [self.settings.topic(name) for name in CONSUMED_TOPICS]
        self.dlq_topic = self.settings.topic(DLQ_TOPIC)
        self._lag_checked = 0.0

    def _client_options(self) -> dict[str, Any]:
        return {"bootstrap_servers": self.settings.kafka_bootstrap_servers, "client_id": "statistics-manager"}

    def _make_consumer(self) -> KafkaConsumer:
        return KafkaConsumer(
            **self._client_options(),
            group_id=self.settings.kafka_group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self.settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=self.settings.kafka_heartbeat_interval_ms,
            max_poll_records=self.settings.kafka_max_poll_records,
            max_poll_interval_ms=self.settings.kafka_max_poll_interval_ms,
        )

    def _make_producer(self) -> KafkaProducer:
        return KafkaProducer(**self._client_options(), acks="all", retries=5, linger_ms=5)

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; never exit on an outage."""
        backoff = Backoff(stop)
        while not stop.is_set():
            try:
                consumer = self._make_consumer()
                producer = self._make_producer()
            except KafkaError as error:
                self._degraded(broker=f"cannot connect to broker: {error}")
                backoff.wait()
                continue
            try:
                consumer.subscribe(self.topics)
                self.context.broker_error = None
                self._loop(consumer, producer, stop, backoff)
            finally:
                _close_quietly(consumer.close, autocommit=False)
                _close_quietly(producer.close, timeout=5)

    def _loop(
        self, consumer: KafkaConsumer, producer: KafkaProducer, stop: threading.Event, backoff: Backoff
    ) -> None:
        while not stop.is_set():
            polled = consumer.poll(timeout_ms=500, max_records=self.settings.kafka_max_poll_records)
            self._refresh_lag(consumer)
            if not polled:
                continue
            started = time.perf_counter()
            messages = [
                Message(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers or ()))
                for records in polled.values()
                for r in records
            ]
            try:
                dead = self.processor.process(messages)
                self._dead_letter(producer, dead)
                consumer.commit(
                    {tp: OffsetAndMetadata(records[-1].offset + 1, "", -1) for tp, records in polled.items()}
                )
            except (TransientFailure, KafkaError) as error:
                broker = isinstance(error, KafkaError)
                self._degraded(**({"broker": str(error)} if broker else {"database": str(error)}))
                self._rewind(consumer, polled)
                self._pause(consumer, backoff.next_delay(), stop)
                continue
            self._healthy()
            backoff.reset()
            metrics.BATCH_DURATION.observe(time.perf_counter() - started)

    @staticmethod
    def _rewind(consumer: KafkaConsumer, polled: dict[Any, list[Any]]) -> None:
        """Seek back to the batch's first offsets: nothing of it was committed."""
        assigned = consumer.assignment()
        for tp, records in polled.items():
            if tp in assigned:  # a rebalance may have moved the partition to another member
                consumer.seek(tp, records[0].offset)

    @staticmethod
    def _pause(consumer: KafkaConsumer, delay_s: float, stop: threading.Event) -> None:
        """Wait out an outage while still polling (paused), so the group never stalls on us."""
        paused = consumer.assignment()
        consumer.pause(*paused)
        deadline = time.monotonic() + delay_s
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                consumer.poll(timeout_ms=max(1, int(min(0.5, deadline - time.monotonic()) * 1000)))
        except KafkaError as error:
            logger.debug("poll during pause failed: %s", error)
        finally:
            consumer.resume(*paused)

    def _dead_letter(self, producer: KafkaProducer, dead: list[DeadLetter]) -> None:
        """Publish dead letters and wait for the broker to acknowledge them."""
        if not dead:
            return
        futures = []
        for letter in dead:
            key, value, headers = dead_letter_record(letter)
            logger.warning(
                "dead-lettering %s[%d]@%d: %s: %s",
                letter.message.topic,
                letter.message.partition,
                letter.message.offset,
                letter.error_class,
                letter.reason,
            )
            futures.append(producer.send(self.dlq_topic, key=key, value=value, headers=headers))
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)
        for letter in dead:
            metrics.DEAD_LETTERED.labels(letter.message.topic, letter.error_class).inc()

    def _refresh_lag(self, consumer: KafkaConsumer) -> None:
        now = time.monotonic()
        if now - self._lag_checked < LAG_REFRESH_S:
            return
        self._lag_checked = now
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = consumer.position(tp, timeout_ms=1000)
            except KafkaError:
                continue
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))

    def _degraded(self, *, broker: str | None = None, database: str | None = None) -> None:
        metrics.CONSUMER_PAUSED.set(1)
        if broker:
            logger.warning("consumption paused, broker unavailable: %s", broker)
            self.context.broker_error = f"broker unavailable: {broker}"[:300]
        if database:
            logger.warning("consumption paused, database unavailable: %s", database)
        self.context.consumer_error = f"paused: {broker or database}"[:300]

    def _healthy(self) -> None:
        if self.context.consumer_error or self.context.broker_error:
            logger.info("consumption resumed")
        metrics.CONSUMER_PAUSED.set(0)
        self.context.consumer_error = None
        self.context.broker_error = None


def _close_quietly(close: Callable[..., Any], **kwargs: Any) -> None:
    try:
        close(**kwargs)
    except Exception:
        logger.debug("close failed", exc_info=True)
