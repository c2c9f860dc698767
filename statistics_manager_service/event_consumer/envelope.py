"""Envelopes: the plain form and both Debezium outbox forms, normalised once at the edge."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Sequence
from typing import Any

import orjson

from statistics_manager_service.log import MAX_CORRELATION_ID_LENGTH

# Header names of a correlation id, compared without case, dashes and underscores:
# X-Correlation-ID (what the relay sends), correlation_id, correlationId.
CORRELATION_HEADER_NAMES = frozenset({"xcorrelationid", "correlationid"})
# A correlation id in the envelope: `"correlationId": "..."` (or correlation_id), found without
# decoding the value a second time.
_ENVELOPE_CORRELATION_ID = re.compile(
    rb'"(?:x-)?correlation_?id"\s*:\s*"([^"\\]{1,%d})"' % MAX_CORRELATION_ID_LENGTH, re.IGNORECASE
)


class PoisonMessage(Exception):
    """A message that can never be processed; it goes to the dead-letter topic with this reason."""


@dataclasses.dataclass(frozen=True)
class Envelope:
    """An event as every handler sees it, whatever form it arrived in."""

    event_id: str
    event_type: str
    payload: dict[str, Any]
    timestamp: Any = None


def _first(mapping: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in mapping and mapping[name] not in (None, ""):
            return mapping[name]
    return None


def _header(headers: Sequence[tuple[str, bytes | None]] | None, *names: str) -> str | None:
    for key, value in headers or ():
        if key in names and value:
            return value.decode("utf-8", errors="replace").strip('"')
    return None


def parse_envelope(
    value: bytes | None, headers: Sequence[tuple[str, bytes | None]] | None = None
) -> Envelope:
    """Decode a message value into an Envelope; raise PoisonMessage when it is not one."""
    if value is None:
        raise PoisonMessage("message has no value (tombstone)")
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        raise PoisonMessage(f"value is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise PoisonMessage(f"value is a JSON {type(document).__name__}, not an object")
    # Debezium with schema: the event is the "payload" of the outer object.
    if "schema" in document and isinstance(document.get("payload"), dict):
        document = document["payload"]
    event_type = _first(document, "eventType", "event_type", "type") or _header(headers, "eventType", "type")
    if not isinstance(event_type, str):
        raise PoisonMessage("envelope has no eventType")
    payload = document.get("payload")
    if isinstance(payload, str | bytes):
        # Debezium outbox: the payload column travels as a JSON string.
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError as error:
            raise PoisonMessage(f"payload string is not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise PoisonMessage("envelope payload is not a JSON object")
    event_id = _first(document, "eventId", "event_id", "id") or _header(headers, "id", "eventId")
    if event_id is None:
        # Without an id, identical content is the same event: a redelivery stays a no-op.
        event_id = "sha256:" + hashlib.sha256(value).hexdigest()[:56]
    event_id = str(event_id)
    if len(event_id) > 64:
        raise PoisonMessage("eventId is longer than 64 characters")
    return Envelope(
        event_id=event_id,
        event_type=event_type,
        payload=payload,
        timestamp=_first(document, "timestamp", "ts"),
    )


def correlation_id_of(value: bytes | None, headers: Sequence[tuple[str, bytes | None]] | None) -> str | None:
    """The correlation id a message carries: from its headers, else from its envelope; None without."""
    for key, header_value in headers or ():
        if header_value and key.lower().replace("-", "").replace("_", "") in CORRELATION_HEADER_NAMES:
            decoded = header_value.decode("utf-8", errors="replace").strip()[:MAX_CORRELATION_ID_LENGTH]
            if decoded:
                return decoded
    if value is None or b"orrelation" not in value:
        return None
    match = _ENVELOPE_CORRELATION_ID.search(value)
    if match is None:
        return None
    return match.group(1).decode("utf-8", errors="replace").strip() or None


def header_text(headers: Sequence[tuple[str, bytes | None]] | None, name: str) -> str | None:
    """The value of the header `name` (case-insensitive) as text; None without."""
    for key, header_value in headers or ():
        if header_value and key.lower() == name:
            return header_value.decode("latin-1")
    return None
