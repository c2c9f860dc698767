"""MeterReadings validated many events at a time: the rules of `MeterReadingsSchema`, vectorized.

Marshmallow costs tens of microseconds per reading. Here the payloads of a whole batch are checked
with NumPy, for the common shape only: numbers as JSON numbers, timestamps as canonical UTC
("2026-05-04T00:00:00Z" or "...+00:00"). A payload of any other shape, or failing any check, is
left to `MeterReadingsSchema`, which accepts it or names the bad field: the reasons stay those of
the schema. The checks are taken from the schema's own fields, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Any, TypeVar, cast

import numpy as np
from marshmallow import fields, validate

from statistics_manager_service.models.events import (
    EARLIEST_READING,
    MAX_FUTURE,
    USER_ID,
    MeterReadingsSchema,
    ReadingSchema,
)

_EARLIEST_S = int(EARLIEST_READING.timestamp())
_MAX_FUTURE_S = MAX_FUTURE.total_seconds()
_CANONICAL_LENGTH = len("2026-05-04T00:00:00")


_V = TypeVar("_V")


def _validator(field: fields.Field, kind: type[_V]) -> _V:
    (found,) = [v for v in field.validators if isinstance(v, kind)]
    return found


_ENVELOPE = MeterReadingsSchema().fields
_USER_ID = cast("re.Pattern[str]", USER_ID.regex)
_SOURCES = _validator(_ENVELOPE["source"], validate.OneOf).choices
_DEVICE_ID = _validator(_ENVELOPE["device_id"], validate.Length)
_READINGS = _validator(_ENVELOPE["readings"], validate.Length)
assert None not in (_DEVICE_ID.min, _DEVICE_ID.max, _READINGS.min, _READINGS.max)


@dataclasses.dataclass(frozen=True)
class _NumberRule:
    name: str
    required: bool
    minimum: float
    maximum: float


def _number_rules() -> tuple[_NumberRule, ...]:
    """The Float fields of ReadingSchema: required or not, and their inclusive range."""
    rules = []
    for name, field in ReadingSchema().fields.items():
        if not isinstance(field, fields.Float):
            continue
        bounds = _validator(field, validate.Range)
        assert bounds.min_inclusive and bounds.max_inclusive and bounds.min is not None
        assert field.allow_nan is False and field.allow_none is not field.required
        maximum = math.inf if bounds.max is None else float(bounds.max)
        rules.append(_NumberRule(name, field.required, float(bounds.min), maximum))
    return tuple(rules)


NUMBER_RULES = _number_rules()
NUMBER_FIELDS = tuple(rule.name for rule in NUMBER_RULES)


@dataclasses.dataclass(frozen=True)
class ReadingColumns:
    """The readings of the accepted events as columns, in event order."""

    event: np.ndarray  # index of each reading's event in the payloads given
    ts: np.ndarray  # epoch seconds
    numbers: dict[str, np.ndarray]  # float64 per number field, NaN where absent or null


def _owner_fields(payload: Any) -> dict[str, Any] | None:
    """The envelope fields when they are of the common, valid shape; None otherwise."""
    if type(payload) is not dict:
        return None
    source, readings = payload.get("source"), payload.get("readings")
    if type(source) is not str or source not in _SOURCES:
        return None
    if type(readings) is not list or not _READINGS.min <= len(readings) <= _READINGS.max:  # type: ignore[operator]
        return None
    data: dict[str, Any] = {"source": source}
    if "user_id" in payload:
        user_id = payload["user_id"]
        if type(user_id) is not str or _USER_ID.match(user_id) is None:
            return None
        data["user_id"] = user_id
    if "device_id" in payload:
        device_id = payload["device_id"]
        if type(device_id) is not str or not _DEVICE_ID.min <= len(device_id) <= _DEVICE_ID.max:  # type: ignore[operator]
            return None
        data["device_id"] = device_id
    if not data.get("user_id") and not data.get("device_id"):
        return None
    return data


def _canonical_body(stamp: Any) -> str:
    """The date-time part of a canonical UTC stamp, or "" for any other value."""
    if type(stamp) is str:
        if len(stamp) == _CANONICAL_LENGTH + 1 and stamp[-1] == "Z":
            return stamp[:-1]
        if len(stamp) == _CANONICAL_LENGTH + 6 and stamp.endswith("+00:00"):
            return stamp[:-6]
    return ""


def _epoch_seconds(stamps: list[Any], now_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Parse canonical UTC stamps within the plausible range; return (seconds, ok per stamp)."""
    bodies = np.array([_canonical_body(stamp) for stamp in stamps], dtype=f"U{_CANONICAL_LENGTH}")
    shaped = bodies != ""
    seconds = np.zeros(len(stamps), dtype=np.int64)
    try:
        parsed = bodies[shaped].astype("datetime64[s]")
    except ValueError:  # an impossible date somewhere: find it stamp by stamp
        parsed = np.array([_parse_or_nat(body) for body in bodies[shaped]], dtype="datetime64[s]")
    # Only the canonical spelling of a valid instant comes back unchanged from NumPy.
    canonical = ~np.isnat(parsed)
    canonical[canonical] = np.datetime_as_string(parsed[canonical], unit="s") == bodies[shaped][canonical]
    seconds[shaped] = np.where(canonical, parsed.astype(np.int64), 0)
    ok = np.zeros(len(stamps), dtype=bool)
    ok[shaped] = canonical
    ok &= (seconds >= _EARLIEST_S) & (seconds <= now_s + _MAX_FUTURE_S)
    return seconds, ok


def _parse_or_nat(body: str) -> np.datetime64:
    try:
        return np.datetime64(body, "s")
    except ValueError:
        return np.datetime64("NaT")


def _numbers(values: list[Any], rule: _NumberRule) -> tuple[np.ndarray, np.ndarray]:
    """Convert one number field of every reading; return (float64 with NaN for null, ok per reading)."""
    allowed = {int, float} if rule.required else {int, float, type(None)}
    numbers: np.ndarray | None = None
    if set(map(type, values)) <= allowed:
        try:
            numbers = np.array(values, dtype=np.float64)
        except OverflowError:
            numbers = None
        # A NaN that was not a null is a float NaN, which the schema refuses: check the slow way.
        if numbers is not None and not rule.required and np.isnan(numbers).sum() != values.count(None):
            numbers = None
    if numbers is None:
        numbers, typed_mask = _numbers_one_by_one(values, allowed)
    else:
        typed_mask = np.ones(len(values), dtype=bool)
    absent = np.isnan(numbers)
    in_range = (numbers >= rule.minimum) & (numbers <= rule.maximum)
    ok = typed_mask & (in_range | (absent & (not rule.required)))
    return numbers, ok


def _numbers_one_by_one(values: list[Any], allowed: set[type]) -> tuple[np.ndarray, np.ndarray]:
    """Convert odd values one by one: (float64, NaN for null; a finite number or an allowed null)."""
    numbers = np.full(len(values), np.nan)
    typed = np.zeros(len(values), dtype=bool)
    for index, value in enumerate(values):
        if type(value) not in allowed:
            continue
        if value is None:
            typed[index] = True
            continue
        try:
            number = float(value)
        except OverflowError:
            continue
        if math.isfinite(number):
            numbers[index], typed[index] = number, True
    return numbers, typed


def plain_meter_readings(
    payloads: Sequence[Any], now_s: float
) -> tuple[list[dict[str, Any] | None], ReadingColumns]:
    """Validate MeterReadings payloads as `MeterReadingsSchema` would, many at once.

    Returns per payload its owner and source fields (`user_id` and/or `device_id`, `source`), or
    None when the payload must go through the schema, and the readings of the accepted payloads.
    """
    owners = [_owner_fields(payload) for payload in payloads]
    candidates = [index for index, owner in enumerate(owners) if owner is not None]
    readings = [reading for index in candidates for reading in payloads[index]["readings"]]
    event = np.repeat(
        np.array(candidates, dtype=np.int64),
        np.array([len(payloads[index]["readings"]) for index in candidates], dtype=np.int64),
    )
    if set(map(type, readings)) <= {dict}:
        row_ok = np.ones(len(readings), dtype=bool)
        items = readings
    else:
        row_ok = np.array([type(reading) is dict for reading in readings], dtype=bool)
        items = [reading if type(reading) is dict else {} for reading in readings]
    stamps = [item.get("timestamp") for item in items]
    ts, stamp_ok = _epoch_seconds(stamps, now_s)
    row_ok &= stamp_ok
    numbers: dict[str, np.ndarray] = {}
    for rule in NUMBER_RULES:
        numbers[rule.name], number_ok = _numbers([item.get(rule.name) for item in items], rule)
        row_ok &= number_ok
    failed = np.unique(event[~row_ok])
    for index in failed.tolist():
        owners[index] = None
    keep = ~np.isin(event, failed)
    columns = ReadingColumns(event[keep], ts[keep], {name: values[keep] for name, values in numbers.items()})
    return owners, columns
