"""A consumed record, as every part of the consumer sees it (independent of the Kafka client)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Message:
    """A consumed record, independent of the Kafka client."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_ms: int | None = None  # the record's timestamp, when the broker gives one
