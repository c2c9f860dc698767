"""The outbox relay: publish outbox rows in order, then delete them.

With a broker, rows go to `<prefix><aggregatetype>` in the Debezium outbox envelope. Without one
(the embedded default), rows are handed to the consumer's own processor in-process, so the
producer endpoints work there too.

An event that cannot be published (the processor refuses it, or the broker can never take it)
is the consumer's dead letter here: the others of its batch go on, it stays in the outbox with
its reason and is tried again with later batches, and after MAX_PUBLISH_ATTEMPTS it is kept as
`failed` (counted, never deleted) until an operator sets it back to `pending`. An outage raises
instead: nothing is deleted and the batch is tried again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata
from opentelemetry.trace import SpanKind
from sqlalchemy.orm import Session, sessionmaker

from statistics_manager_service import metrics, tracing
from statistics_manager_service.backoff import Backoff
from statistics_manager_service.event_producers.outbox import (
    count_by_status,
    debezium_envelope,
    delete_published,
    lock_relay,
    message_headers,
    pending_events,
    record_failures,
)
from statistics_manager_service.produce_errors import is_permanent_produce_error
from statistics_manager_service.storage.engine import TRANSIENT_ERRORS, session_scope
from statistics_manager_service.storage.tables import OUTBOX_FAILED, OUTBOX_PENDING, OutboxEvent

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
IDLE_WAIT_S = 0.5
# Attempts (in separate batches) before an event is kept as failed: a lost race gets its retry.
MAX_PUBLISH_ATTEMPTS = 3

# Publishes events and returns, by `seq`, the reason of each one it could not publish; raises on
# an outage.
Publisher = Callable[[Sequence[OutboxEvent]], Mapping[int, str]]


class OutboxRelay:
    """Move outbox rows to their destination, at least once and in order."""

    def __init__(
        self, session_factory: sessionmaker[Session], publish: Publisher, batch_size: int = BATCH_SIZE
    ) -> None:
        self.session_factory = session_factory
        self.publish = publish
        self.batch_size = batch_size
        self.wakeup = threading.Event()

    def relay_once(self) -> int:
        """Publish one batch of pending rows; return how many were handled (published or failed)."""
        with session_scope(self.session_factory) as session:
            if not lock_relay(session):
                return 0  # another relay is publishing; the lock ends with its transaction
            events = pending_events(session, self.batch_size)
            if not events:
                self._count(session)
                return 0
            failures = self.publish(events)
            published = [event for event in events if event.seq not in failures]
            failed = [(event, failures[event.seq]) for event in events if event.seq in failures]
            delete_published(session, published)
            for event in published:
                metrics.OUTBOX_PUBLISHED.labels(event.type).inc()
            for event, reason in failed:
                logger.warning("outbox event %s (%s) not published: %s", event.id, event.type, reason)
            for event in record_failures(session, failed, MAX_PUBLISH_ATTEMPTS):
                logger.error(
                    "outbox event %s (%s) kept as failed after %d attempts: %s",
                    event.id,
                    event.type,
                    event.attempts,
                    event.failed_reason,
                )
                metrics.OUTBOX_FAILED.labels(event.type).inc()
            self._count(session)
            return len(events)

    @staticmethod
    def _count(session: Session) -> None:
        counts = count_by_status(session)
        metrics.OUTBOX_PENDING.set(counts[OUTBOX_PENDING])
        metrics.OUTBOX_FAILED_KEPT.set(counts[OUTBOX_FAILED])

    def run(self, stop: threading.Event) -> None:
        """Relay until stopped; back off while the broker or database is unavailable."""
        backoff = Backoff(stop)
        while not stop.is_set():
            try:
                sent = self.relay_once()
            except (KafkaError, *TRANSIENT_ERRORS) as error:
                logger.warning("outbox relay paused: %s", str(error).splitlines()[0])
                backoff.wait()
                continue
            except Exception:
                logger.exception("outbox relay failed; retrying")
                backoff.wait()
                continue
            backoff.reset()
            if sent < self.batch_size:
                self.wakeup.wait(IDLE_WAIT_S)
                self.wakeup.clear()


@contextmanager
def publication(events: Sequence[OutboxEvent], topic_prefix: str) -> Iterator[list[list[tuple[str, bytes]]]]:
    """Yield the Kafka headers of each event, while the block publishes them.

    While tracing, each event is published in a producer span of its own, a child of the span
    that queued it, and its `traceparent` header names that span; the spans end with the block
    (failed if it raises). Otherwise the stored `traceparent` is passed on as it is.
    """
    spans = [
        tracing.start_span(
            f"{topic_prefix}{event.aggregatetype} publish",
            kind=SpanKind.PRODUCER,
            parent=event.traceparent,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": f"{topic_prefix}{event.aggregatetype}",
                "messaging.message.id": event.id,
                "event_type": event.type,
            },
        )
        for event in events
    ]
    try:
        yield [
            message_headers(event, event.traceparent if span is None else tracing.traceparent_of(span))
            for event, span in zip(events, spans, strict=True)
        ]
    except BaseException as error:
        for span in spans:
            tracing.mark_failed(span, f"{type(error).__name__}: {error}"[:300])
        raise
    finally:
        for span in spans:
            if span is not None:
                span.end()


def kafka_publisher(producer: KafkaProducer, topic_prefix: str) -> Publisher:
    """Publish rows to Kafka and wait for every acknowledgement.

    A row the broker can never take (too large, invalid) is reported as failed; any other
    produce error is an outage and raises.
    """

    def publish(events: Sequence[OutboxEvent]) -> Mapping[int, str]:
        failures: dict[int, str] = {}
        futures: list[tuple[OutboxEvent, FutureRecordMetadata]] = []
        with publication(events, topic_prefix) as headers:
            for event, event_headers in zip(events, headers, strict=True):
                try:
                    future = producer.send(
                        f"{topic_prefix}{event.aggregatetype}",
                        key=event.aggregateid.encode(),
                        value=debezium_envelope(event),
                        headers=event_headers,
                    )
                except KafkaError as error:
                    if not is_permanent_produce_error(error):
                        raise
                    failures[event.seq] = f"{type(error).__name__}: {error}"
                    continue
                futures.append((event, future))
            producer.flush(timeout=30)
            for event, future in futures:
                try:
                    future.get(timeout=30)
                except KafkaError as error:
                    if not is_permanent_produce_error(error):
                        raise
                    failures[event.seq] = f"{type(error).__name__}: {error}"
        return failures

    return publish
