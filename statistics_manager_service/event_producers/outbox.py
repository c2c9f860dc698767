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

from statistics_manager_service.storage.tables import OutboxEvent

STATISTICS_AGGREGATE = "statistics"
# pg_advisory_xact_lock's first key for "one household's producer requests" (second: the user's hash).
REQUEST_LOCK_NAMESPACE = 0x5251


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

    One INSERT for all of them, in the caller's transaction.
    """
    if not events:
        return []
    now_ms = int(time.time() * 1000)
    ids = [event.event_id or str(uuid.uuid4()) for event in events]
    rows = [
        {
            "id": event_id,
            "aggregatetype": event.aggregate_type,
            "aggregateid": event.aggregate_id,
            "type": event.event_type,
            "timestamp": now_ms,
            "payload": encode_payload(event.payload),
        }
        for event_id, event in zip(ids, events, strict=True)
    ]
    session.execute(sa.insert(OutboxEvent), rows)
    return ids


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
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            sa.text("SELECT pg_advisory_xact_lock(:namespace, hashtext(:key))"),
            {"namespace": REQUEST_LOCK_NAMESPACE, "key": aggregate_id},
        )
    found = session.execute(
        sa.select(OutboxEvent.id)
        .where(
            OutboxEvent.aggregateid == aggregate_id,
            OutboxEvent.type == event_type,
            OutboxEvent.payload == encode_payload(payload),
        )
        .limit(1)
    ).scalar_one_or_none()
    return None if found is None else str(found)


def pending_events(session: Session, limit: int) -> list[OutboxEvent]:
    """Return the oldest unsent events, locked against other relays (skipped if already locked)."""
    statement = sa.select(OutboxEvent).order_by(OutboxEvent.seq).limit(limit)
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


def delete_created_before(session: Session, created_before_ms: int, limit: int) -> int:
    """Delete up to `limit` of the oldest rows queued before `created_before_ms`; return how many.

    For the Debezium mode only, where the connector reads inserts from the WAL and the service's
    relay never deletes what it would have published.
    """
    oldest = (
        sa.select(OutboxEvent.seq)
        .where(OutboxEvent.timestamp < created_before_ms)
        .order_by(OutboxEvent.seq)
        .limit(limit)
    )
    result = session.execute(
        sa.delete(OutboxEvent)
        .where(OutboxEvent.seq.in_(oldest.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def count_pending(session: Session) -> int:
    """Count the events not yet published."""
    return int(session.execute(sa.select(sa.func.count()).select_from(OutboxEvent)).scalar_one())


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
