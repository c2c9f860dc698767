"""Export the consumer's metric series before anything happens.

A labelled counter appears with its first increment, and `increase()` needs a sample before it:
the first dead letter after a restart would go unseen. So every series whose labels are known in
advance is exported at 0 when the consumer starts, and the freshness gauge starts from what the
database holds rather than from nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from statistics_manager_service import metrics
from statistics_manager_service.event_consumer.consumer import CONSUMED_TOPICS
from statistics_manager_service.event_consumer.handlers import HANDLERS
from statistics_manager_service.event_consumer.processor import (
    DEAD_LETTER_REASONS,
    READINGS_EVENT,
    READINGS_TOPIC,
)
from statistics_manager_service.models.events import SOURCES
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.households import newest_reading_ts

if TYPE_CHECKING:
    from statistics_manager_service.config import Settings
    from statistics_manager_service.context import ServiceContext

logger = logging.getLogger(__name__)
OWN_TOPIC = "statistics"


def declare_known_series(settings: Settings) -> None:
    """Export at 0 the counters of every known topic, event type, dead-letter reason and source."""
    for short_topic in CONSUMED_TOPICS:
        for reason in DEAD_LETTER_REASONS:
            metrics.DEAD_LETTERED.labels(settings.topic(short_topic), reason)
    metrics.EVENTS_PROCESSED.labels(settings.topic(READINGS_TOPIC), READINGS_EVENT)
    for short_topic, handlers in HANDLERS.items():
        metrics.EVENTS_DUPLICATE.labels(settings.topic(short_topic))
        for event_type in handlers:
            metrics.EVENTS_PROCESSED.labels(settings.topic(short_topic), event_type)
    for event_type in HANDLERS[OWN_TOPIC]:  # the relay publishes exactly the events of our topic
        metrics.OUTBOX_PUBLISHED.labels(event_type)
    for source in SOURCES:
        metrics.READINGS_INGESTED.labels(source)
    for cause in settings.alert_causes:
        metrics.ALERTS_QUEUED.labels(cause)


def seed_freshness(context: ServiceContext) -> None:
    """Start the freshness gauge at the newest reading stored, so a restarted worker reports it."""
    try:
        with session_scope(context.session_factory) as session:
            newest = newest_reading_ts(session)
    except Exception as error:  # noqa: BLE001 - the next ingested batch sets the gauge anyway
        logger.warning("freshness not read from the database: %s", str(error).splitlines()[0])
        return
    if newest is not None:
        metrics.NEWEST_AGGREGATED_READING.set(newest)
