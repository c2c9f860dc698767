"""Tell a record the broker can never take from a broker that is away, for every producer.

A produce error is an outage (pause, retry, lose nothing) unless the record itself is the
problem: then retrying can never succeed, and whoever sends it must set it aside instead.

Decided here:
* permanent (the record): too large for the producer or the broker, a record list too large,
  an invalid or corrupt record, an invalid topic name;
* an outage (everything else): connectivity, timeouts, leaders moving, unknown topics (they may
  be being created), and authorization failures too. A missing ACL is an operator's fix, not
  a property of the record: every record would fail alike, and dead-lettering them all (to a
  topic that may be refused as well) would lose them, so the work pauses until it is granted.
"""

from __future__ import annotations

from collections.abc import Sequence

from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)

PERMANENT_PRODUCE_ERRORS: tuple[type[Exception], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidRecordError,
    CorruptRecordError,
    InvalidTopicError,
)
# A record's framing on top of its key, value and headers (record batch header, varints):
# generous, so that a record estimated to fit really does.
RECORD_OVERHEAD_BYTES = 256


def is_permanent_produce_error(error: BaseException) -> bool:
    """Whether the broker (or the producer) will never take the record, however often it is sent."""
    return isinstance(error, PERMANENT_PRODUCE_ERRORS)


def record_size_bytes(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> int:
    """An upper estimate of a record's size in a produce request."""
    header_bytes = sum(len(name.encode()) + len(content) + 8 for name, content in headers)
    return RECORD_OVERHEAD_BYTES + len(key or b"") + len(value or b"") + header_bytes
