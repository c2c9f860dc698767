"""The outbox relay: publish outbox rows in order, then delete them.

With a broker, rows go to `<prefix><aggregatetype>` in the Debezium outbox envelope. Without one
(the embedded default), rows are handed to the consumer's own processor in-process, so the
producer endpoints work there too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from kafka import KafkaProducer
from kafka.errors import KafkaError
from opentelemetry.trace import SpanKind
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from statistics_manager_service import metrics, tracing
from statistics_manager_service.backoff import Backoff
from statistics_manager_service.event_producers.outbox import (
    count_pending,
    debezium_envelope,
    delete_published,
    message_headers,
    pending_events,
)
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.tables import OutboxEvent

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
IDLE_WAIT_S = 0.5

Publisher = Callable[[Sequence[OutboxEvent]], None]


class OutboxRelay:
    """Move outbox rows to their destination, at least once and in order."""

    def __init__(self, session_factory: sessionmaker[Session], publish: Publisher) -> None:
        self.session_factory = session_factory
        self.publish = publish
        self.wakeup = threading.Event()

    def relay_once(self) -> int:
        """Publish one batch of pending rows; return how many were sent."""
        with session_scope(self.session_factory) as session:
            events = pending_events(session, BATCH_SIZE)
            if not events:
                metrics.OUTBOX_PENDING.set(0)
                return 0
            self.publish(events)
            delete_published(session, events)
            for event in events:
                metrics.OUTBOX_PUBLISHED.labels(event.type).inc()
            metrics.OUTBOX_PENDING.set(count_pending(session))
            return len(events)

    def run(self, stop: threading.Event) -> None:
        """Relay until stopped; back off while the broker or database is unavailable."""
        backoff = Backoff(stop)
        while not stop.is_set():
            try:
                sent = self.relay_once()
            except (KafkaError, sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as error:
                logger.warning("outbox relay paused: %s", str(error).splitlines()[0])
                backoff.wait()
                continue
            except Exception:
                logger.exception("outbox relay failed; retrying")
                backoff.wait()
                continue
            backoff.reset()
            if sent < BATCH_SIZE:
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
    """Publish rows to Kafka and wait for every acknowledgement."""

    def publish(events: Sequence[OutboxEvent]) -> None:
        with publication(events, topic_prefix) as headers:
            futures = [
                producer.send(
                    f"{topic_prefix}{event.aggregatetype}",
                    key=event.aggregateid.encode(),
                    value=debezium_envelope(event),
                    headers=event_headers,
                )
                for event, event_headers in zip(events, headers, strict=True)
            ]
            producer.flush(timeout=30)
            for future in futures:
                future.get(timeout=30)

    return publish
