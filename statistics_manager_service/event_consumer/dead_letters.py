"""The dead letter of a message too large to dead-letter whole.

A dead letter is the original message plus its reason in headers: for a message near the
broker's size limit, that is over it, and the broker would refuse it for ever. Such a message
is dead-lettered truncated instead: its coordinates, its reason, its original size and the first
few KB of its value, enough to recognise it and to find the whole of it on its topic.
"""

from __future__ import annotations

from kafka.errors import KafkaError

from statistics_manager_service.event_consumer.processor import DeadLetter
from statistics_manager_service.produce_errors import is_permanent_produce_error, record_size_bytes

DeadLetterRecord = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]

# The part of the original value a truncated dead letter keeps.
EXCERPT_BYTES = 4096
MAX_KEY_BYTES = 1024
MAX_REASON_BYTES = 1000


def truncated_dead_letter_record(dead: DeadLetter, max_request_size: int) -> DeadLetterRecord:
    """Return a dead letter of at most `max_request_size` bytes: no original headers, a value excerpt."""
    message = dead.message
    key = message.key[:MAX_KEY_BYTES] if message.key is not None else None
    headers = [
        ("dlq.original.topic", message.topic.encode()),
        ("dlq.original.partition", str(message.partition).encode()),
        ("dlq.original.offset", str(message.offset).encode()),
        ("dlq.original.size", str(len(message.value or b"")).encode()),
        ("dlq.truncated", b"true"),
        ("dlq.error.class", dead.error_class.encode()),
        ("dlq.error.message", dead.reason.encode("utf-8", errors="replace")[:MAX_REASON_BYTES]),
    ]
    room = max_request_size - record_size_bytes(key, None, headers)
    value = None if message.value is None else message.value[: max(0, min(EXCERPT_BYTES, room))]
    return key, value, headers


def fitting_record(dead: DeadLetter, record: DeadLetterRecord, max_request_size: int) -> DeadLetterRecord:
    """Return `record` when the producer can send it, else the truncated dead letter."""
    if record_size_bytes(*record) <= max_request_size:
        return record
    return truncated_dead_letter_record(dead, max_request_size)


def is_truncated(record: DeadLetterRecord) -> bool:
    """Whether `record` is already a truncated dead letter."""
    return ("dlq.truncated", b"true") in record[2]


def refused_for_good(error: KafkaError, record: DeadLetterRecord) -> bool:
    """Whether the broker refused a whole dead letter that a truncated one may replace."""
    return is_permanent_produce_error(error) and not is_truncated(record)
