"""Wire the consumer and the outbox relay into a process's background."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from kafka import KafkaProducer

from statistics_manager_service.background import Background
from statistics_manager_service.backoff import Backoff
from statistics_manager_service.event_consumer.alerts import AlertJob
from statistics_manager_service.event_consumer.consumer import EventConsumer, make_producer
from statistics_manager_service.event_consumer.handlers import Services
from statistics_manager_service.event_consumer.housekeeping import Housekeeping
from statistics_manager_service.event_consumer.known_series import declare_known_series, seed_freshness
from statistics_manager_service.event_consumer.message import Message
from statistics_manager_service.event_consumer.message_context import handling_batch, handling_message
from statistics_manager_service.event_consumer.peer_groups import PeerGroupJob
from statistics_manager_service.event_consumer.processor import BatchProcessor
from statistics_manager_service.event_producers.outbox import debezium_envelope
from statistics_manager_service.event_producers.relay import (
    OutboxRelay,
    Publisher,
    kafka_publisher,
    publication,
)
from statistics_manager_service.storage.tables import OutboxEvent
from statistics_manager_service.tariff_loading import apply_tariff_changes, updater_for

if TYPE_CHECKING:
    from statistics_manager_service.context import ServiceContext

logger = logging.getLogger(__name__)


def build_processor(context: ServiceContext) -> BatchProcessor:
    """The batch processor the consumer (and the in-process relay) use."""
    services = Services(settings=context.settings, updater=updater_for(context))
    return BatchProcessor(context.session_factory, services, context.settings.kafka_topic_prefix)


def peer_group_job(context: ServiceContext) -> PeerGroupJob:
    """The periodic job of the peer groups, as the workers, the demo and the command line run it."""
    return PeerGroupJob(
        context.session_factory, updater_for(context), context.settings.peer_comparison_interval_s
    )


def in_process_publisher(processor: BatchProcessor, topic_prefix: str) -> Publisher:
    """Hand outbox rows straight to the processor, as if they had come back from the broker.

    What the consumer would dead-letter is reported as not published, with its reason; an
    outage (TransientFailure) raises.
    """

    def publish(events: Sequence[OutboxEvent]) -> Mapping[int, str]:
        with publication(events, topic_prefix) as headers:
            messages = [
                Message(
                    f"{topic_prefix}{event.aggregatetype}",
                    0,
                    event.seq,
                    event.aggregateid.encode(),
                    debezium_envelope(event),
                    tuple(event_headers),
                )
                for event, event_headers in zip(events, headers, strict=True)
            ]
            with handling_batch(messages, "consume in-process"):
                dead = processor.process_or_dead_letter(messages)
                for letter in dead:
                    with handling_message(letter.message):
                        logger.warning("in-process event %s failed: %s", letter.message.offset, letter.reason)
        return {letter.message.offset: f"{letter.error_class}: {letter.reason}" for letter in dead}

    return publish


def start_workers(context: ServiceContext, background: Background) -> None:
    """Start the consumer and relay threads (or the in-process relay without a broker)."""
    settings = context.settings
    processor = build_processor(context)
    declare_known_series(settings)
    seed_freshness(context)

    def sync_tariffs(stop: threading.Event) -> None:
        # The database may be down at start: retry until the book in force is applied.
        backoff = Backoff(stop)
        while not stop.is_set():
            try:
                apply_tariff_changes(context, stop)
                return
            except Exception as error:  # noqa: BLE001 - any failure is retried; it is logged
                logger.warning("tariff book check failed, retrying: %s", str(error).splitlines()[0])
                backoff.wait()

    background.spawn("tariff-sync", sync_tariffs)
    background.spawn("housekeeping", Housekeeping(context.session_factory, settings).run)
    if settings.peer_comparison_interval_s > 0:
        background.spawn("peer-groups", peer_group_job(context).run)
    if settings.alerts_enabled and settings.alert_causes:
        background.spawn("alerts", AlertJob(context.session_factory, settings, updater_for(context).book).run)
    if not settings.kafka_enabled:
        logger.info("KAFKA_BOOTSTRAP_SERVERS is not set: outbox events are handled in-process")
        relay = OutboxRelay(
            context.session_factory, in_process_publisher(processor, settings.kafka_topic_prefix)
        )
        context.relay = relay
        background.spawn("outbox-relay", relay.run)
        # No consumer drains recorded zone-wide recomputations between batches: this thread does.
        background.spawn("pending-recomputes", lambda stop: drain_pending_recomputes(processor, stop))
        return
    consumer = EventConsumer(context, processor)
    background.spawn("event-consumer", consumer.run)
    if not settings.outbox_relay_enabled:
        logger.info("OUTBOX_RELAY_ENABLED=false: the outbox table is left to Debezium")
        return
    producer_holder: dict[str, KafkaProducer] = {}

    def publish(events: Sequence[OutboxEvent]) -> Mapping[int, str]:
        if "producer" not in producer_holder:
            producer_holder["producer"] = make_producer(settings)
        return kafka_publisher(producer_holder["producer"], settings.kafka_topic_prefix)(events)

    relay = OutboxRelay(context.session_factory, publish)
    context.relay = relay
    background.spawn("outbox-relay", relay.run)


def drain_pending_recomputes(processor: BatchProcessor, stop: threading.Event, idle_s: float = 1.0) -> None:
    """Do the recorded chunks of zone-wide recomputations one transaction at a time until stopped;
    wait `idle_s` when there is none, and back off while the database is unavailable."""
    backoff = Backoff(stop)
    while not stop.is_set():
        try:
            if not processor.recompute_pending():
                stop.wait(idle_s)
            backoff.reset()
        except Exception as error:  # noqa: BLE001 - the chunk stays recorded and is tried again
            logger.warning("pending recomputation postponed: %s", str(error).splitlines()[0])
            backoff.wait()


def start_background(context: ServiceContext, role: str) -> Background:
    """Start what `role` runs in the background (nothing for `api`)."""
    background = Background()
    if role != "api":
        start_workers(context, background)
    return background
