"""The in-process relay sets aside an event it cannot publish, on PostgreSQL and SQLite."""

from __future__ import annotations

import sqlalchemy as sa
from prometheus_client import REGISTRY

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.event_consumer.runner import build_processor, in_process_publisher
from statistics_manager_service.event_producers.outbox import NewEvent, add_events
from statistics_manager_service.event_producers.relay import MAX_PUBLISH_ATTEMPTS, OutboxRelay
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.tables import OutboxEvent

USER = "relayhome1"


def _announcement(n: int) -> NewEvent:
    payload = {
        "user_id": USER,
        "granularity": "daily",
        "start": f"2026-05-{n:02d}",
        "end": f"2026-05-{n:02d}",
    }
    return NewEvent("StatisticsUpdated", USER, {**payload, "cause": "readings"})


def _queue(context: ServiceContext, events: list[NewEvent]) -> list[str]:
    with session_scope(context.session_factory) as session:
        return add_events(session, events)


def _rows(context: ServiceContext) -> list[tuple[str, str, int, str | None]]:
    with context.engine.connect() as connection:
        statement = sa.select(
            OutboxEvent.id, OutboxEvent.status, OutboxEvent.attempts, OutboxEvent.failed_reason
        ).order_by(OutboxEvent.seq)
        return [tuple(row) for row in connection.execute(statement)]  # type: ignore[misc]


def _processed(context: ServiceContext) -> float:
    labels = {"topic": context.settings.topic("statistics"), "event_type": "StatisticsUpdated"}
    return REGISTRY.get_sample_value("statistics_events_processed_total", labels) or 0.0


def _failed_total() -> float:
    return REGISTRY.get_sample_value("statistics_outbox_failed_total", {"event_type": "NoSuchEvent"}) or 0.0


def test_an_event_that_always_fails_is_kept_with_its_reason_and_never_blocks_the_others(
    context: ServiceContext,
) -> None:
    relay = OutboxRelay(
        context.session_factory,
        in_process_publisher(build_processor(context), context.settings.kafka_topic_prefix),
    )
    processed_before, failed_before = _processed(context), _failed_total()
    ids = _queue(
        context,
        [
            _announcement(1),
            NewEvent("NoSuchEvent", USER, {"user_id": USER}),
            _announcement(2),
            _announcement(3),
        ],
    )
    failing = ids[1]

    assert relay.relay_once() == 4
    assert _processed(context) - processed_before == 3  # the others went through at once
    assert [(row[0], row[1], row[2]) for row in _rows(context)] == [(failing, "pending", 1)]

    handled = [relay.relay_once() for _ in range(MAX_PUBLISH_ATTEMPTS)]
    assert handled == [1] * (MAX_PUBLISH_ATTEMPTS - 1) + [0]
    [(row_id, status, attempts, reason)] = _rows(context)
    assert (row_id, status, attempts) == (failing, "failed", MAX_PUBLISH_ATTEMPTS)
    assert reason is not None and reason.startswith("UnknownEventType: unknown event type 'NoSuchEvent'")
    assert _failed_total() - failed_before == 1
    assert REGISTRY.get_sample_value("statistics_outbox_failed_events") == 1

    # Later events still flow; the failed one stays until an operator retries it.
    _queue(context, [_announcement(4), _announcement(5)])
    assert relay.relay_once() == 2
    assert _processed(context) - processed_before == 5
    assert [row[:2] for row in _rows(context)] == [(failing, "failed")]

    with context.engine.begin() as connection:  # what an operator runs to retry failed events
        connection.execute(
            sa.text("UPDATE events SET status = 'pending', attempts = 0 WHERE status = 'failed'")
        )
    assert relay.relay_once() == 1
    assert [row[:3] for row in _rows(context)] == [(failing, "pending", 1)]
