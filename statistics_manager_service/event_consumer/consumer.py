"""The consumer loop: poll a batch, handle it in one transaction, dead-letter, then commit offsets.

Whatever fails, the loop carries on: a database or broker outage pauses consumption (the
batch is rewound, nothing is committed, and the consumer keeps polling paused so it stays in
its group); any other failure restarts the Kafka clients. Offsets are committed only after
the batch's transaction, so a crash at any point re-delivers what the database may or may not
hold, and the processor's processed-event ids make the second delivery a no-op.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import CommitFailedError, KafkaError, RebalanceInProgressError
from kafka.structs import OffsetAndMetadata, TopicPartition

from statistics_manager_service import metrics
from statistics_manager_service.backoff import Backoff
from statistics_manager_service.config import Settings
from statistics_manager_service.consumer_state import HEARTBEAT_INTERVAL_S, ConsumerState, now_s
from statistics_manager_service.event_consumer.dead_letters import (
    DeadLetterRecord,
    fitting_record,
    is_truncated,
    refused_for_good,
    truncated_dead_letter_record,
)
from statistics_manager_service.event_consumer.message import Message
from statistics_manager_service.event_consumer.message_context import handling_batch, handling_message
from statistics_manager_service.event_consumer.processor import BatchProcessor, DeadLetter, TransientFailure

if TYPE_CHECKING:
    from statistics_manager_service.context import ServiceContext

logger = logging.getLogger(__name__)

CONSUMED_TOPICS = ("meter-readings", "user-account", "grid-signals", "statistics")
DLQ_TOPIC = "statistics.dlq"
LAG_REFRESH_S = 5.0
RECONNECT_BACKOFF_MAX_MS = 2000


def client_options(settings: Settings) -> dict[str, Any]:
    """What every Kafka client of the service is built with."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": "statistics-manager",
        # kafka-python backs reconnects off up to 30 s by default: after a broker outage
        # consumption and publishing would resume up to half a minute late.
        "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
    }


def make_producer(settings: Settings) -> KafkaProducer:
    """The producer of the dead letters and of the outbox relay: every write acknowledged by all
    in-sync replicas, a record as large as KAFKA_MAX_REQUEST_SIZE."""
    return KafkaProducer(
        **client_options(settings),
        acks="all",
        retries=5,
        linger_ms=5,
        max_request_size=settings.kafka_max_request_size,
    )


# At most this many records gathered into one batch, whatever their size: a batch's statements
# list its event ids and households, and SQLite takes at most 32,766 parameters per statement.
MAX_GATHERED_RECORDS = 20_000
PAUSE_POLL_S = 0.5  # while paused, how often to poll (group membership, rebalances)
PROBE_INTERVAL_S = 2.0  # while degraded and idle, how often to check whether the outage is over


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


class EventConsumer:
    """Consume the service's topics with effectively-once processing."""

    def __init__(self, context: ServiceContext, processor: BatchProcessor) -> None:
        self.context = context
        self.settings = context.settings
        self.processor = processor
        self.topics = [self.settings.topic(name) for name in CONSUMED_TOPICS]
        self.dlq_topic = self.settings.topic(DLQ_TOPIC)
        self._lag_checked = 0.0
        self._probed = 0.0
        self._lag = 0
        self._progress_s = now_s()
        self._reported: ConsumerState | None = None

    def _client_options(self) -> dict[str, Any]:
        return client_options(self.settings)

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
        return make_producer(self.settings)

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; never exit on an outage or any other failure."""
        backoff = Backoff(stop)
        while not stop.is_set():
            consumer: KafkaConsumer | None = None
            producer: KafkaProducer | None = None
            try:
                consumer = self._make_consumer()
                producer = self._make_producer()
                consumer.subscribe(self.topics)
                self._loop(consumer, producer, stop, backoff)
            except KafkaError as error:
                self._degraded(broker=f"{type(error).__name__}: {error}")
                backoff.wait()
            except Exception as error:  # the consumer must outlive any failure
                logger.exception("event consumer failed; reconnecting")
                metrics.CONSUMER_PAUSED.set(1)
                self._report("restarting", type(error).__name__)
                backoff.wait()
            finally:
                if consumer is not None:
                    _close_quietly(consumer.close, autocommit=False)
                if producer is not None:
                    _close_quietly(producer.close, timeout=5)

    def _loop(
        self, consumer: KafkaConsumer, producer: KafkaProducer, stop: threading.Event, backoff: Backoff
    ) -> None:
        while not stop.is_set():
            try:
                polled = consumer.poll(timeout_ms=500, max_records=self.settings.kafka_max_poll_records)
            except KafkaError as error:
                self._degraded(broker=f"{type(error).__name__}: {error}")
                backoff.wait()
                continue
            self._refresh_lag(consumer)
            if not polled:
                self._probe_recovery(consumer)
                self._heartbeat(caught_up=True)
                self._recompute_pending()
                continue
            started = time.perf_counter()
            self._fill(consumer, polled)
            messages = [
                Message(
                    r.topic,
                    r.partition,
                    r.offset,
                    r.key,
                    r.value,
                    tuple(r.headers or ()),
                    r.timestamp if r.timestamp is not None and r.timestamp >= 0 else None,
                )
                for records in polled.values()
                for r in records
            ]
            try:
                with handling_batch(messages):
                    dead = self._process(messages)
                    self._dead_letter(producer, dead)
                consumer.commit(
                    {tp: OffsetAndMetadata(records[-1].offset + 1, "", -1) for tp, records in polled.items()}
                )
            except (CommitFailedError, RebalanceInProgressError) as error:
                # The group rebalanced meanwhile; whoever owns the partitions now re-reads the
                # batch from the last commit, and its effects are already recorded.
                logger.info("offset commit failed after a rebalance: %s", error)
                self._rewind(consumer, polled)
                continue
            except (TransientFailure, KafkaError) as error:
                broker = isinstance(error, KafkaError)
                reason = f"{type(error).__name__}: {error}" if broker else str(error)
                self._degraded(**({"broker": reason} if broker else {"database": reason}))
                self._rewind(consumer, polled)
                self._pause(
                    consumer, backoff.next_delay(), stop, None if broker else self._database_reachable
                )
                continue
            self._healthy()
            backoff.reset()
            metrics.BATCH_DURATION.observe(time.perf_counter() - started)
            self._recompute_pending()

    def _recompute_pending(self) -> None:
        """Do one chunk of a zone-wide recomputation between batches: readings keep flowing."""
        try:
            self.processor.recompute_pending()
        except Exception as error:  # noqa: BLE001 - the chunk stays recorded and is tried again
            logger.warning("pending recomputation postponed: %s", str(error).splitlines()[0])

    def _fill(self, consumer: KafkaConsumer, polled: dict[Any, list[Any]]) -> None:
        """Add the records the client has already fetched until the batch holds `kafka_batch_max_bytes`.

        A batch costs a few dozen statements whatever its size, so small messages (one reading
        each) are worth gathering by the thousand; messages of a day's readings fill it at once.
        Only what is buffered is taken: a quiet stream is not kept waiting.
        """
        size = sum(len(record.value or b"") for records in polled.values() for record in records)
        count = sum(len(records) for records in polled.values())
        while size < self.settings.kafka_batch_max_bytes and count < MAX_GATHERED_RECORDS:
            try:
                wanted = min(self.settings.kafka_max_poll_records, MAX_GATHERED_RECORDS - count)
                more = consumer.poll(timeout_ms=0, max_records=wanted)
            except KafkaError:
                return  # process what is here; the next poll meets the failure again
            if not more:
                return
            for partition, records in more.items():
                polled.setdefault(partition, []).extend(records)
                size += sum(len(record.value or b"") for record in records)
                count += len(records)

    def _process(self, messages: list[Message]) -> list[DeadLetter]:
        return self.processor.process_or_dead_letter(messages)

    def _database_reachable(self) -> bool:
        return self.processor.database_reachable()

    @staticmethod
    def _rewind(consumer: KafkaConsumer, polled: dict[Any, list[Any]]) -> None:
        """Seek back to the batch's first offsets: nothing of it was committed."""
        assigned = consumer.assignment()
        for tp, records in polled.items():
            if tp in assigned:  # a rebalance may have moved the partition to another member
                consumer.seek(tp, records[0].offset)

    def _pause(
        self,
        consumer: KafkaConsumer,
        delay_s: float,
        stop: threading.Event,
        recovered: Callable[[], bool] | None = None,
    ) -> None:
        """Wait out an outage while still polling, so the group never stalls on us.

        The wait ends early once `recovered()` (checked every few seconds) says the outage is over.

        Whatever a poll returns meanwhile (the rewound batch, or records of partitions a
        rebalance has just assigned) is handed back with a seek, never dropped. Partitions are
        deliberately not paused: kafka-python 3.0.12 parks the buffered records of a paused
        partition and, after `resume`, may never fetch that partition again.
        """
        deadline = time.monotonic() + delay_s
        next_check = time.monotonic() + PROBE_INTERVAL_S
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                if recovered is not None and time.monotonic() >= next_check:
                    if recovered():
                        return
                    next_check = time.monotonic() + PROBE_INTERVAL_S
                polled = consumer.poll(timeout_ms=100, max_records=1)
                if polled:
                    self._rewind(consumer, polled)
                stop.wait(max(0.0, min(PAUSE_POLL_S, deadline - time.monotonic())))
        except KafkaError as error:
            logger.debug("poll during pause failed: %s", error)

    def _dead_letter(self, producer: KafkaProducer, dead: list[DeadLetter]) -> None:
        """Publish dead letters and wait for the broker to acknowledge them.

        A dead letter too large for the producer, or refused by the broker for its size or
        shape, goes truncated: a record the broker can never take must not stall the partition.
        Any other produce error is an outage and raises.
        """
        if not dead:
            return
        max_size = self.settings.kafka_max_request_size
        sent = []
        for letter in dead:
            with handling_message(letter.message):
                logger.warning(
                    "dead-lettering %s[%d]@%d: %s: %s",
                    letter.message.topic,
                    letter.message.partition,
                    letter.message.offset,
                    letter.error_class,
                    letter.reason,
                )
            record = fitting_record(letter, dead_letter_record(letter), max_size)
            sent.append((letter, *self._send_dead_letter(producer, letter, record)))
        producer.flush(timeout=30)
        for letter, record, future in sent:
            try:
                future.get(timeout=30)
            except KafkaError as error:
                if not refused_for_good(error, record):
                    raise
                logger.warning("dead letter refused (%s): sending it truncated", error)
                record, retry = self._send_dead_letter(
                    producer, letter, truncated_dead_letter_record(letter, max_size)
                )
                producer.flush(timeout=30)
                retry.get(timeout=30)
            if is_truncated(record):
                metrics.DEAD_LETTERS_TRUNCATED.inc()
        for letter in dead:
            metrics.DEAD_LETTERED.labels(letter.message.topic, letter.error_class).inc()

    def _send_dead_letter(
        self, producer: KafkaProducer, letter: DeadLetter, record: DeadLetterRecord
    ) -> tuple[DeadLetterRecord, Any]:
        """Send a dead letter (truncated if the producer refuses it whole); return it and its future."""
        try:
            return record, producer.send(self.dlq_topic, key=record[0], value=record[1], headers=record[2])
        except KafkaError as error:
            if not refused_for_good(error, record):
                raise
        record = truncated_dead_letter_record(letter, self.settings.kafka_max_request_size)
        return record, producer.send(self.dlq_topic, key=record[0], value=record[1], headers=record[2])

    def _refresh_lag(self, consumer: KafkaConsumer) -> None:
        now = time.monotonic()
        if now - self._lag_checked < LAG_REFRESH_S:
            return
        self._lag_checked = now
        lag = 0
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = consumer.position(tp, timeout_ms=200)
            except KafkaError:
                return  # the broker is slow or away: try again later
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))
            lag += max(0, highwater - position)
        self._lag = lag

    def _probe_recovery(self, consumer: KafkaConsumer) -> None:
        """While degraded and idle, clear the degraded state once the database and broker answer.

        (A degraded consumer normally recovers by retrying its batch; this covers the batch's
        partitions having moved to another member meanwhile.)
        """
        if not self._degraded_now():
            return
        now = time.monotonic()
        if now - self._probed < PROBE_INTERVAL_S:
            return
        self._probed = now
        if not self._database_reachable():
            return
        try:
            consumer.end_offsets([TopicPartition(self.topics[0], 0)], timeout_ms=2000)
        except KafkaError:
            return
        self._healthy()

    def _degraded(self, *, broker: str | None = None, database: str | None = None) -> None:
        metrics.CONSUMER_PAUSED.set(1)
        if broker:
            logger.warning("consumption paused, broker unavailable: %s", broker)
        if database:
            logger.warning("consumption paused, database unavailable: %s", database)
        self._report("paused", "broker" if broker else "database")

    def _degraded_now(self) -> bool:
        """Whether the consumer last reported itself paused or restarting."""
        return self._reported is not None and self._reported.state != "running"

    def _healthy(self) -> None:
        if self._degraded_now():
            logger.info("consumption resumed")
        metrics.CONSUMER_PAUSED.set(0)
        self._heartbeat(caught_up=True)

    def _heartbeat(self, caught_up: bool) -> None:
        """Report that the consumer runs (at most every HEARTBEAT_INTERVAL_S unless its state changed)."""
        if caught_up:
            self._progress_s = now_s()
        reported = self._reported
        if (
            reported is None
            or reported.state != "running"
            or now_s() - reported.heartbeat_s >= HEARTBEAT_INTERVAL_S
        ):
            self._report("running", None)

    def _report(self, state: str, cause: str | None) -> None:
        """Publish the consumer's state for `/ready` in every process of the pod."""
        self._reported = ConsumerState(state, cause, now_s(), self._progress_s, self._lag)
        self.context.consumer_state.publish(self._reported)


def _close_quietly(close: Callable[..., Any], **kwargs: Any) -> None:
    try:
        close(**kwargs)
    except Exception:
        logger.debug("close failed", exc_info=True)
