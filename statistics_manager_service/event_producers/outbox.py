"""The transactional outbox: events are written in the same transaction as the change they announce."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from statistics_manager_service import tracing
from statistics_manager_service.log import current_correlation_id
from statistics_manager_service.storage.locks import RELAY_LOCK_KEY, REQUEST_NAMESPACE, hold, try_lock_job
from statistics_manager_service.storage.tables import OUTBOX_FAILED, OUTBOX_PENDING, OutboxEvent
from statistics_manager_service.storage.upsert import delete_oldest

STATISTICS_AGGREGATE = "statistics"
# The Kafka header of an event's correlation id (the HTTP header's name; consumers accept others).
CORRELATION_HEADER = "X-Correlation-ID"


@dataclasses.dataclass(frozen=True)
class NewEvent:
    """An event to publish: its type, the aggregate (user) it is keyed by and its payload."""

    event_type: str
    aggregate_id: str
    payload: Mapping[str, Any]
    aggregate_type: str = STATISTICS_AGGREGATE
    event_id: str | None = None


def add_events(session: Session, events: Sequence[NewEvent]) -> list[str]:
    """Queue events for publication to `<prefix><aggregate_type>`, in order; return their ids.

    One INSERT for all of them, in the caller's transaction. Each row keeps the correlation id
    and trace context of the request or message being served, for the relay to pass on.
    """
    if not events:
        return []
    now_ms = int(time.time() * 1000)
    correlation_id = current_correlation_id()
    traceparent = tracing.current_traceparent()
    ids = [event.event_id or str(uuid.uuid4()) for event in events]
    rows = [
        {
            "id": event_id,
            "aggregatetype": event.aggregate_type,
            "aggregateid": event.aggregate_id,
            "type": event.event_type,
            "timestamp": now_ms,
            "payload": encode_payload(event.payload),
            "correlation_id": correlation_id,
            "traceparent": traceparent,
        }
        for event_id, event in zip(ids, events, strict=True)
    ]
    session.execute(sa.insert(OutboxEvent), rows)
    return ids


def lock_relay(session: Session) -> bool:
    """Take the relay lock for the caller's transaction; False when another relay holds it.

    One relay publishes at a time, so that two workers never publish one household's events
    out of order (each taking a batch and racing the other to the broker). SQLite has a single
    writer and a single relay: there is nothing to lock.
    """
    return try_lock_job(session, RELAY_LOCK_KEY)


def encode_payload(payload: Mapping[str, Any]) -> str:
    """The text an event's payload is stored as (equal payloads give equal text)."""
    return orjson.dumps(payload).decode()


def pending_event_id(
    session: Session, event_type: str, aggregate_id: str, payload: Mapping[str, Any]
) -> str | None:
    """Return the id of a queued, unpublished event equal to this one, if any.

    On PostgreSQL the household's requests are serialized first (until the transaction ends), so
    two concurrent callers cannot both miss each other's event.
    """
    hold(session, REQUEST_NAMESPACE, aggregate_id)
    found = session.execute(
        sa.select(OutboxEvent.id)
        .where(
            OutboxEvent.aggregateid == aggregate_id,
            OutboxEvent.type == event_type,
            OutboxEvent.payload == encode_payload(payload),
            OutboxEvent.status == OUTBOX_PENDING,  # a failed one will never go out: queue anew
        )
        .limit(1)
    ).scalar_one_or_none()
    return None if found is None else str(found)


def pending_events(session: Session, limit: int) -> list[OutboxEvent]:
    """Return the oldest unsent events, locked against other relays (skipped if already locked)."""
    statement = (
        sa.select(OutboxEvent)
        .where(OutboxEvent.status == OUTBOX_PENDING)
        .order_by(OutboxEvent.seq)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    return list(session.scalars(statement))


def delete_published(session: Session, events: list[OutboxEvent]) -> None:
    """Delete events once published: a published row has done its work, and kept it would cost
    storage for every batch of every household for ever."""
    seqs = [event.seq for event in events]
    session.execute(
        sa.delete(OutboxEvent).where(OutboxEvent.seq.in_(seqs)).execution_options(synchronize_session=False)
    )
    for event in events:
        session.expunge(event)


def record_failures(
    session: Session, failures: Sequence[tuple[OutboxEvent, str]], max_attempts: int
) -> list[OutboxEvent]:
    """Count a failed attempt of each event, with its reason; return those now `failed` for good."""
    spent = []
    for event, reason in failures:
        event.attempts = (event.attempts or 0) + 1
        event.failed_reason = reason[:2000]
        if event.attempts >= max_attempts:
            event.status = OUTBOX_FAILED
            spent.append(event)
    session.flush()
    return spent


def delete_created_before(session: Session, created_before_ms: int, limit: int) -> int:
    """Delete up to `limit` of the oldest rows queued before `created_before_ms`; return how many.

    For the Debezium mode only, where the connector reads inserts from the WAL and the service's
    relay never deletes what it would have published.
    """
    return delete_oldest(session, OutboxEvent.seq, OutboxEvent.timestamp, created_before_ms, limit)


def count_by_status(session: Session) -> dict[str, int]:
    """Count the events not yet published, pending and failed."""
    rows = session.execute(sa.select(OutboxEvent.status, sa.func.count()).group_by(OutboxEvent.status))
    counts = {OUTBOX_PENDING: 0, OUTBOX_FAILED: 0}
    counts.update({str(status): int(count) for status, count in rows})
    return counts


def message_headers(event: OutboxEvent, traceparent: str | None) -> list[tuple[str, bytes]]:
    """The Kafka headers of an event: its id and type, correlation id and `traceparent` when known."""
    headers = [("id", event.id.encode()), ("eventType", event.type.encode())]
    if event.correlation_id:
        headers.append((CORRELATION_HEADER, event.correlation_id.encode()))
    if traceparent:
        headers.append((tracing.TRACEPARENT, traceparent.encode()))
    return headers


def debezium_envelope(event: OutboxEvent) -> bytes:
    """Encode an outbox row the way Debezium's outbox event router publishes it."""
    body = {
        "schema": {
            "type": "struct",
            "name": "io.debezium.outbox.Event",
            "optional": False,
            "fields": [
                {"field": "eventId", "type": "string", "optional": False},
                {"field": "eventType", "type": "string", "optional": False},
                {"field": "aggregateType", "type": "string", "optional": False},
                {"field": "aggregateId", "type": "string", "optional": False},
                {"field": "timestamp", "type": "int64", "optional": False},
                {"field": "payload", "type": "string", "optional": False},
            ],
        },
        "payload": {
            "eventId": event.id,
            "eventType": event.type,
            "aggregateType": event.aggregatetype,
            "aggregateId": event.aggregateid,
            "timestamp": event.timestamp,
            "payload": event.payload,
        },
    }
    return orjson.dumps(body)
