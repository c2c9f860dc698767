"""What the consumer's log lines and spans know of the messages they handle.

A batch's lines carry the correlation id its messages share; a batch of several (or of none)
gets an id of its own, and a debug line names the messages' ids. The lines (and outbox events)
of one message's handler, failure or dead letter carry that message's own id. While tracing, a batch's span
links to the span of every message's producer, and continues their trace when they share one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry.trace import SpanContext, SpanKind

from statistics_manager_service import tracing
from statistics_manager_service.event_consumer.envelope import correlation_id_of, header_text
from statistics_manager_service.log import correlation_scope

if TYPE_CHECKING:
    from statistics_manager_service.event_consumer.message import Message

logger = logging.getLogger(__name__)

# How many of a batch's correlation ids its debug line names.
NAMED_CORRELATION_IDS = 20


def message_correlation_id(message: Message) -> str | None:
    """The correlation id of a message, from its headers or its envelope."""
    return correlation_id_of(message.value, message.headers)


def batch_correlation_id(messages: Sequence[Message]) -> str:
    """The id a batch's lines carry: its messages' one correlation id, else one of its own."""
    ids = list(dict.fromkeys(filter(None, map(message_correlation_id, messages))))
    if len(ids) == 1:
        return ids[0]
    batch_id = str(uuid.uuid4())
    if ids and logger.isEnabledFor(logging.DEBUG):
        named = ", ".join(ids[:NAMED_CORRELATION_IDS])
        more = f" and {len(ids) - NAMED_CORRELATION_IDS} more" if len(ids) > NAMED_CORRELATION_IDS else ""
        logger.debug("batch %s handles messages of correlation ids %s%s", batch_id, named, more)
    return batch_id


def _producer_spans(messages: Sequence[Message]) -> list[SpanContext]:
    contexts = (tracing.span_context(header_text(m.headers, tracing.TRACEPARENT)) for m in messages)
    distinct = {(c.trace_id, c.span_id): c for c in contexts if c is not None}  # a context is unhashable
    return list(distinct.values())


@contextmanager
def handling_batch(messages: Sequence[Message], name: str = "consume") -> Iterator[None]:
    """Handle a batch with its correlation id in every log line and, while tracing, in its span."""
    correlation_id = batch_correlation_id(messages)
    producers = _producer_spans(messages) if tracing.enabled() else []
    topics = sorted({message.topic for message in messages})
    with (
        correlation_scope(correlation_id),
        tracing.span(
            f"{name} {topics[0]}" if len(topics) == 1 else name,
            kind=SpanKind.CONSUMER,
            # One trace (one request's events, say) goes on in the batch; several are linked.
            parent=producers[0] if len({p.trace_id for p in producers}) == 1 else None,
            links=producers if len(producers) > 1 else (),
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.batch.message_count": len(messages),
                "messaging.destination.name": ",".join(topics),
                "correlation_id": correlation_id,
            },
        ),
    ):
        yield


@contextmanager
def handling_message(message: Message) -> Iterator[None]:
    """Log the block's lines with the message's own correlation id (the current one without)."""
    correlation_id = message_correlation_id(message)
    if correlation_id is None:
        yield
        return
    with correlation_scope(correlation_id):
        yield
