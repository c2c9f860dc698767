"""Build events and push them through the real handlers, as the consumer does (no broker)."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.event_consumer.processor import DeadLetter, Message
from statistics_manager_service.event_consumer.runner import build_processor

PREFIX = "hems."
_offsets = itertools.count(1)


def iso(instant: dt.datetime) -> str:
    """Format an aware datetime as ISO-8601 with Z."""
    return instant.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def reading(
    at: dt.datetime,
    imported_wh: float,
    exported_wh: float = 0.0,
    generated_wh: float | None = None,
    power_w: float | None = None,
    voltage_v: float | None = None,
) -> dict[str, Any]:
    """One reading as a hub sends it."""
    body: dict[str, Any] = {
        "timestamp": iso(at),
        "energy_imported_wh": imported_wh,
        "energy_exported_wh": exported_wh,
    }
    if generated_wh is not None:
        body["energy_generated_wh"] = generated_wh
    if power_w is not None:
        body["power_imported_w"] = power_w
    if voltage_v is not None:
        body["voltage_v"] = voltage_v
    return body


def envelope(event_type: str, payload: dict[str, Any], event_id: str | None = None) -> bytes:
    """A plain-form envelope."""
    return orjson.dumps(
        {
            "eventId": event_id or str(uuid.uuid4()),
            "eventType": event_type,
            "timestamp": iso(dt.datetime.now(dt.UTC)),
            "payload": payload,
        }
    )


def message(topic: str, value: bytes | None, key: str | None = None) -> Message:
    """A consumed record on `<prefix><topic>`."""
    return Message(PREFIX + topic, 0, next(_offsets), key.encode() if key else None, value)


def meter_message(
    user_id: str, readings: Sequence[dict[str, Any]], source: str = "hub", event_id: str | None = None
) -> Message:
    """A MeterReadings event."""
    payload = {"user_id": user_id, "source": source, "readings": list(readings)}
    return message("meter-readings", envelope("MeterReadings", payload, event_id), user_id)


def account_message(user_id: str, event_type: str = "UserRegistered", **fields: Any) -> Message:
    """An account-manager event."""
    return message("user-account", envelope(event_type, {"user_id": user_id, **fields}), user_id)


def signal_message(event_type: str, payload: dict[str, Any]) -> Message:
    """A grid-signal event."""
    return message("grid-signals", envelope(event_type, payload), payload.get("zone"))


def process(context: ServiceContext, messages: Iterable[Message]) -> list[DeadLetter]:
    """Handle messages as one consumed batch."""
    return build_processor(context).process(list(messages))
