"""Handle a polled batch in one transaction: dedupe, validate, batch readings, dead-letter the rest.

The processor knows nothing of Kafka: it takes messages and returns the ones to dead-letter.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from marshmallow import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from statistics_manager_service import metrics
from statistics_manager_service.event_consumer.bounds import EVENT_COLUMN, refused_messages
from statistics_manager_service.event_consumer.curves import FetchedForecast, ForecastUnavailable
from statistics_manager_service.event_consumer.days import announce_closed_days
from statistics_manager_service.event_consumer.envelope import Envelope, PoisonMessage, parse_envelope
from statistics_manager_service.event_consumer.forecasts import fetch_batch_forecasts
from statistics_manager_service.event_consumer.handlers import (
    HANDLERS,
    KNOWN_EVENT_TYPES,
    SHARED_TOPICS,
    EventMeta,
    Services,
    announce_updates,
    handle_own_announcement,
    load_payload,
    recompute_pending,
)
from statistics_manager_service.event_consumer.message import Message
from statistics_manager_service.event_consumer.message_context import handling_message
from statistics_manager_service.models.events import MeterReadingsSchema, parse_instant
from statistics_manager_service.models.meter_readings import ReadingColumns, plain_meter_readings
from statistics_manager_service.storage import households as household_store
from statistics_manager_service.storage.engine import TRANSIENT_ERRORS, session_scope
from statistics_manager_service.storage.readings import READING_COLUMNS

logger = logging.getLogger(__name__)

READINGS_TOPIC = "meter-readings"
READINGS_EVENT = "MeterReadings"
# Failing halves this small are applied message by message.
ISOLATE_ONE_BY_ONE = 8


# The error classes of dead letters the processor decides itself (an unexpected failure of a
# message is dead-lettered under its exception's class name).
DEAD_LETTER_REASONS = (
    "PoisonMessage",
    "UnknownEventType",
    "UnknownDevice",
    "ErasedUser",
    "ReadingOutOfBounds",
    "DeviceMismatch",
)


class TransientFailure(Exception):
    """The database (or forecast API) is unavailable: pause, retry the same batch later, commit nothing."""


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """A message that cannot be processed, and why."""

    message: Message
    error_class: str
    reason: str

    @classmethod
    def from_error(cls, message: Message, error: BaseException) -> DeadLetter:
        """The dead letter of a message whose handling raised `error`: its class and text."""
        return cls(message, type(error).__name__, str(error)[:1000] or type(error).__name__)


def _coordinates(message: Message) -> tuple[str, int, int]:
    return message.topic, message.partition, message.offset


@dataclasses.dataclass
class _Pending:
    message: Message
    envelope: Envelope
    short_topic: str


def _event_meta(item: _Pending, forecasts: dict[str, FetchedForecast]) -> EventMeta:
    """The event's id and time: the envelope's timestamp, else the record's."""
    event_time = None
    if item.envelope.timestamp is not None:
        try:
            event_time = parse_instant(item.envelope.timestamp, "timestamp")
        except ValidationError:
            logger.warning(
                "event %s: unreadable timestamp %r", item.envelope.event_id, item.envelope.timestamp
            )
    if event_time is None and item.message.timestamp_ms is not None:
        event_time = dt.datetime.fromtimestamp(item.message.timestamp_ms / 1000, dt.UTC)
    return EventMeta(item.envelope.event_id, event_time, forecasts.get(item.envelope.event_id))


class BatchProcessor:
    """Apply a batch of messages effectively once."""

    def __init__(self, session_factory: sessionmaker[Session], services: Services, topic_prefix: str) -> None:
        self.session_factory = session_factory
        self.services = services
        self.topic_prefix = topic_prefix
        # The forecasts the batch being processed asked for, fetched before its transactions.
        self._forecasts: dict[str, FetchedForecast] = {}

    def process_or_dead_letter(self, messages: Sequence[Message]) -> list[DeadLetter]:
        """`process`, deciding also for the lone message it raises for (it isolates the failing
        messages of a larger batch): one more try (a lost race, say), then a dead letter with the
        error. An error while the database is away is an outage (TransientFailure), never the
        message's fault; an error of a larger batch is outside `process`'s contract and goes up."""
        dead: list[DeadLetter] = []
        for attempt in (1, 2):
            try:
                dead = self.process(messages)
                break
            except TransientFailure:
                raise
            except Exception as error:
                if not self.database_reachable():
                    raise TransientFailure(f"database unreachable after {type(error).__name__}") from error
                if len(messages) != 1:
                    raise
                if attempt == 1:
                    continue
                with handling_message(messages[0]):
                    logger.exception("message %s[%d]@%d failed", *_coordinates(messages[0]))
                dead = [DeadLetter.from_error(messages[0], error)]
        if dead and not self.database_reachable():
            # An outage may surface as an unexpected error: never dead-letter messages for it.
            raise TransientFailure("database unreachable while messages failed")
        return dead

    def database_reachable(self) -> bool:
        """Whether the database answers a trivial query."""
        try:
            with session_scope(self.session_factory) as session:
                session.execute(sa.text("SELECT 1"))
        except Exception:  # noqa: BLE001 - any failure means unreachable
            return False
        return True

    def process(self, messages: Sequence[Message]) -> list[DeadLetter]:
        """Apply `messages` in one transaction; isolate the failing messages when the batch fails."""
        try:
            self._forecasts = fetch_batch_forecasts(messages, self.services.settings)
        except ForecastUnavailable as error:
            raise TransientFailure(str(error)) from error
        try:
            return self._apply_once(messages)
        except TransientFailure:
            raise
        except Exception:
            if len(messages) == 1:
                raise
            logger.warning("batch of %d failed; isolating the failing messages", len(messages), exc_info=True)
        middle = len(messages) // 2
        return self._isolate(messages[:middle]) + self._isolate(messages[middle:])

    def _apply_once(self, messages: Sequence[Message]) -> list[DeadLetter]:
        try:
            with session_scope(self.session_factory) as session:
                return self._apply(session, messages)
        except TRANSIENT_ERRORS as error:
            raise TransientFailure(str(error).splitlines()[0]) from error

    def recompute_pending(self) -> bool:
        """Do one chunk of a recorded zone-wide recomputation in a transaction of its own; tell
        whether there was one."""
        try:
            with session_scope(self.session_factory) as session:
                return recompute_pending(session, self.services)
        except TRANSIENT_ERRORS as error:
            raise TransientFailure(str(error).splitlines()[0]) from error

    def _isolate(self, messages: Sequence[Message]) -> list[DeadLetter]:
        """Apply `messages` in order, each half in its own transaction, splitting a half that fails.

        A few bad messages among thousands cost a few dozen transactions, not one per message;
        halves of at most ISOLATE_ONE_BY_ONE messages go one by one, so that a batch of many bad
        messages costs little more than one transaction per message. A failing message alone is
        dead-lettered with its error.
        """
        try:
            return self._apply_once(messages)
        except TransientFailure:
            raise
        except Exception as error:  # noqa: BLE001 - any failure of a message is its own dead letter
            failure = error
        if len(messages) > ISOLATE_ONE_BY_ONE:
            middle = len(messages) // 2
            return self._isolate(messages[:middle]) + self._isolate(messages[middle:])
        if len(messages) > 1:
            return [dead for message in messages for dead in self._isolate([message])]
        message = messages[0]
        with handling_message(message):
            logger.error(
                "message %s[%d]@%d failed",
                message.topic,
                message.partition,
                message.offset,
                exc_info=(type(failure), failure, failure.__traceback__),
            )
        return [DeadLetter.from_error(message, failure)]

    # ---- one transaction ----------------------------------------------------------------

    def _apply(self, session: Session, messages: Sequence[Message]) -> list[DeadLetter]:
        dead: list[DeadLetter] = []
        pending: list[_Pending] = []
        for message in messages:
            short_topic = message.topic.removeprefix(self.topic_prefix)
            try:
                envelope = parse_envelope(message.value, message.headers)
            except PoisonMessage as error:
                dead.append(DeadLetter(message, "PoisonMessage", str(error)))
                continue
            if not self._known(short_topic, envelope.event_type):
                if short_topic in SHARED_TOPICS:
                    event_label = metrics.bounded_label(
                        envelope.event_type, KNOWN_EVENT_TYPES | {READINGS_EVENT}
                    )
                    metrics.EVENTS_SKIPPED.labels(message.topic, event_label).inc()
                else:
                    reason = f"unknown event type {envelope.event_type!r} on {message.topic}"
                    dead.append(DeadLetter(message, "UnknownEventType", reason))
                continue
            pending.append(_Pending(message, envelope, short_topic))
        pending = self._drop_duplicates(session, pending)
        readings: list[_Pending] = []
        announcements: list[_Pending] = []
        for item in pending:
            if item.envelope.event_type == READINGS_EVENT:
                readings.append(item)
                continue
            if not _recorded(item):
                # Our own announcements change nothing and depend on nothing.
                announcements.append(item)
                continue
            # Other events may depend on the readings before them (an erasure): flush first.
            dead.extend(self._flush_readings(session, readings))
            readings = []
            try:
                with session.begin_nested(), handling_message(item.message):
                    HANDLERS[item.short_topic][item.envelope.event_type](
                        session, item.envelope.payload, self.services, _event_meta(item, self._forecasts)
                    )
                    household_store.record_processed(
                        session, [(item.envelope.event_id, item.envelope.event_type)]
                    )
            except PoisonMessage as error:
                dead.append(DeadLetter(item.message, "PoisonMessage", str(error)))
                continue
            metrics.EVENTS_PROCESSED.labels(item.message.topic, item.envelope.event_type).inc()
        dead.extend(self._flush_readings(session, readings))
        for item in announcements:
            metrics.EVENTS_PROCESSED.labels(item.message.topic, item.envelope.event_type).inc()
        return dead

    def _known(self, short_topic: str, event_type: str) -> bool:
        if short_topic == READINGS_TOPIC:
            return event_type == READINGS_EVENT
        return event_type in HANDLERS.get(short_topic, {})

    def _drop_duplicates(self, session: Session, pending: list[_Pending]) -> list[_Pending]:
        """Drop events already processed, and repeats within the batch, among those whose ids are
        recorded; the others are harmless to apply again."""
        seen = household_store.processed_event_ids(
            session, {p.envelope.event_id for p in pending if _recorded(p)}
        )
        unique: list[_Pending] = []
        for item in pending:
            if not _recorded(item):
                unique.append(item)
                continue
            if item.envelope.event_id in seen:
                metrics.EVENTS_DUPLICATE.labels(item.message.topic).inc()
                continue
            seen.add(item.envelope.event_id)
            unique.append(item)
        return unique

    def _flush_readings(self, session: Session, items: list[_Pending]) -> list[DeadLetter]:
        """Validate, resolve and store a run of MeterReadings events with one upsert and one recompute."""
        if not items:
            return []
        dead: list[DeadLetter] = []
        # The common shape is checked for the whole run at once; the schema sees the rest.
        owners, columns = plain_meter_readings([item.envelope.payload for item in items], time.time())
        schema = MeterReadingsSchema()
        valid: list[tuple[_Pending, dict[str, Any]]] = []
        for item, owner in zip(items, owners, strict=True):
            if owner is None:
                try:
                    owner = load_payload(schema, item.envelope.payload)
                except PoisonMessage as error:
                    dead.append(DeadLetter(item.message, "PoisonMessage", str(error)))
                    continue
            valid.append((item, owner))
        devices = household_store.resolve_devices(
            session, {data["device_id"] for _, data in valid if data.get("device_id")}
        )
        owned: list[tuple[_Pending, dict[str, Any], str]] = []
        for item, data in valid:
            mapped = devices.get(data["device_id"]) if data.get("device_id") else None
            user_id = data.get("user_id") or mapped
            if mapped is not None and mapped != user_id:
                # Readings of one household's meter must never land in another's statistics.
                reason = f"device id {data['device_id']!r} is mapped to another household than user {user_id}"
                dead.append(DeadLetter(item.message, "DeviceMismatch", reason))
                continue
            if user_id is None:
                dead.append(
                    DeadLetter(
                        item.message,
                        "UnknownDevice",
                        f"device id {data['device_id']!r} is not mapped to a user",
                    )
                )
                continue
            owned.append((item, data, user_id))
        erased = household_store.erased_user_ids(session, {user_id for _, _, user_id in owned})
        accepted = []
        for item, data, user_id in owned:
            if user_id in erased:
                dead.append(DeadLetter(item.message, "ErasedUser", f"user {user_id} was erased"))
            else:
                accepted.append((item, data, user_id))
        if not accepted:
            return dead
        frame = _readings_frame(items, accepted, columns)
        refused = refused_messages(session, frame, self.services.settings, time.time())
        if refused:
            dead += [
                DeadLetter(items[event].message, "ReadingOutOfBounds", why) for event, why in refused.items()
            ]
            refused_ids = {id(items[event]) for event in refused}
            accepted = [entry for entry in accepted if id(entry[0]) not in refused_ids]
            if not accepted:
                return dead
            frame = frame[~frame[EVENT_COLUMN].isin(list(refused))]
        frame = frame.drop(columns=EVENT_COLUMN).reset_index(drop=True)
        household_store.ensure_households(session, frame["user_id"].unique().tolist())
        recomputed = self.services.updater.apply_readings(session, frame)
        announce_updates(session, recomputed, "readings")
        announce_closed_days(
            session, recomputed.windows["user_id"].tolist(), self.services.settings.default_timezone
        )
        for item, _, _ in accepted:
            metrics.EVENTS_PROCESSED.labels(item.message.topic, READINGS_EVENT).inc()
        return dead


def _recorded(item: _Pending) -> bool:
    """Whether an event's id is recorded with its effects, so that a redelivery is skipped.

    Readings merge into their day rows by instant, taking the larger value of each field, and our
    own announcements change nothing: applying either again leaves the same tables, so recording
    their ids would cost a row per message for nothing.
    """
    return (
        item.envelope.event_type != READINGS_EVENT
        and HANDLERS[item.short_topic][item.envelope.event_type] is not handle_own_announcement
    )


def _readings_frame(
    items: list[_Pending], accepted: list[tuple[_Pending, dict[str, Any], str]], columns: ReadingColumns
) -> pd.DataFrame:
    """Flatten the accepted events of a run into one frame of readings.

    Events checked at once have their readings in `columns` (by position in `items`); events
    the schema validated carry theirs in `data["readings"]`. EVENT_COLUMN holds each reading's
    event, by position in `items`.
    """
    position = {id(item): index for index, item in enumerate(items)}
    owner_of = np.full(len(items), None, dtype=object)
    source_of = np.full(len(items), None, dtype=object)
    rows = []
    for item, data, user_id in accepted:
        if "readings" not in data:
            owner_of[position[id(item)]], source_of[position[id(item)]] = user_id, data["source"]
            continue
        rows += [
            (
                user_id,
                data["source"],
                int(reading["timestamp"].timestamp()),
                *(reading.get(name) for name in READING_COLUMNS[3:]),
                position[id(item)],
            )
            for reading in data["readings"]
        ]
    frames = []
    chosen = pd.notna(owner_of[columns.event])
    if chosen.any():
        events = columns.event[chosen]
        values = {name: columns.numbers[name][chosen] for name in READING_COLUMNS[3:]}
        frames.append(
            pd.DataFrame(
                {
                    "user_id": owner_of[events],
                    "source": source_of[events],
                    "ts": columns.ts[chosen],
                    **values,
                    EVENT_COLUMN: events,
                }
            )
        )
    if rows:
        frames.append(pd.DataFrame(rows, columns=[*READING_COLUMNS, EVENT_COLUMN]))
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    frame["ts"] = frame["ts"].astype("int64")
    for column in READING_COLUMNS[3:]:
        frame[column] = frame[column].astype("float64")
    return frame
