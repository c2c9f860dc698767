"""Marshmallow schemas of the event payloads this service consumes: unknown fields are ignored,
wrong types and impossible values are rejected with a reason that names the field."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates, validates_schema

from statistics_manager_service.aggregation.billing import FIRST_BILLING_DAY, LAST_BILLING_DAY
from statistics_manager_service.aggregation.forecasts import FORECAST_ORIGINS

USER_ID_LENGTH = 10
SOURCES = ("hub", "dongle", "smart_meter")
TARIFF_TYPES = ("simple", "bi-hourly", "tri-hourly", "dynamic")
# Readings older than this are absurd for a household meter (the register could not be read).
EARLIEST_READING = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
# A clock a little ahead is tolerated; a day ahead is a broken clock.
MAX_FUTURE = dt.timedelta(days=1)
MAX_READINGS_PER_EVENT = 50_000
MAX_REGISTER_WH = 1e12  # a terawatt-hour: no household register reaches it
MAX_SIGNAL_VALUES = 10_000
MAX_CONTRACTED_KVA = 41.4  # the largest normal low-voltage (BTN) contract the tariff book prices
MAX_BILL_BUDGET_EUR = 100_000.0  # far above any household's bill for one period
# Printable ASCII without spaces: what the account manager issues, and safe in every database.
USER_ID = validate.Regexp(r"^[\x21-\x7e]{10}$", error="user_id must be 10 printable characters")
# A forecast event comes from a forecast service or the built-in baseline; mock curves have their own event.
PUBLISHED_FORECAST_ORIGINS = tuple(origin for origin in FORECAST_ORIGINS if origin != "mock")
_POWER_PATTERN = re.compile(r"^\s*(\d+(?:[.,]\d+)?)\s*(k?VA|kW)?\s*$", re.IGNORECASE)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _Base(Schema):
    class Meta:
        unknown = EXCLUDE


class UtcDateTime(fields.DateTime):
    """An ISO-8601 instant; a value without an offset is taken as UTC."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dt.datetime:
        if isinstance(value, str) and value.endswith("Z"):
            value = value[:-1] + "+00:00"
        parsed: dt.datetime = super()._deserialize(value, attr, data, **kwargs)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.astimezone(dt.UTC)


def _finite(
    minimum: float | None = 0.0, maximum: float | None = None, required: bool = False
) -> fields.Float:
    return fields.Float(
        required=required,
        allow_none=not required,
        allow_nan=False,
        validate=validate.Range(min=minimum, max=maximum),
    )


class ReadingSchema(_Base):
    """One reading: cumulative registers (Wh) and optional instantaneous values."""

    timestamp = UtcDateTime(required=True)
    energy_imported_wh = _finite(0.0, MAX_REGISTER_WH, required=True)
    energy_exported_wh = _finite(0.0, MAX_REGISTER_WH, required=True)
    energy_generated_wh = _finite(0.0, MAX_REGISTER_WH)
    power_imported_w = _finite(0.0, 1e7)
    power_exported_w = _finite(0.0, 1e7)
    voltage_v = _finite(0.0, 1000.0)

    @validates("timestamp")
    def _plausible_time(self, value: dt.datetime, **_: Any) -> None:
        if value < EARLIEST_READING:
            raise ValidationError(f"timestamp {value.isoformat()} is before {EARLIEST_READING.date()}")
        if value > _utc_now() + MAX_FUTURE:
            raise ValidationError(f"timestamp {value.isoformat()} lies in the future")


class MeterReadingsSchema(_Base):
    """A batch of readings from one device of one household."""

    user_id = fields.String(validate=USER_ID)
    device_id = fields.String(validate=validate.Length(min=1, max=128))
    source = fields.String(required=True, validate=validate.OneOf(SOURCES))
    readings = fields.List(
        fields.Nested(ReadingSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_READINGS_PER_EVENT),
    )

    @validates_schema
    def _has_owner(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("user_id") and not data.get("device_id"):
            raise ValidationError("either user_id or device_id is required", "user_id")


def parse_contracted_power(value: Any) -> float | None:
    """Turn "6.9 kVA" (or 6.9) into kVA."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        match = _POWER_PATTERN.match(str(value))
        if not match:
            raise ValidationError(f"contracted_power {value!r} is not like '6.9 kVA'")
        number = float(match.group(1).replace(",", "."))
    if not 0 < number <= MAX_CONTRACTED_KVA:
        raise ValidationError(
            f"contracted_power {value!r} is outside 0-{MAX_CONTRACTED_KVA} kVA (household contracts)"
        )
    return number


def parse_instant(value: Any, what: str) -> dt.datetime:
    """Turn an ISO-8601 text (UTC unless it has an offset) or epoch seconds or milliseconds into
    an aware UTC datetime; raise ValidationError naming `what` otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        # Epoch milliseconds from 1973 on are larger than any epoch seconds before 5138.
        seconds = value / 1000 if abs(value) >= 1e11 else value
        try:
            return dt.datetime.fromtimestamp(seconds, dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise ValidationError(f"{what} {value!r} is out of range") from None
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    raise ValidationError(f"{what} {value!r} is not an ISO-8601 date-time such as 2026-03-01T00:00:00+00:00")


class InstantField(fields.Field):
    """An instant given as ISO-8601 text or epoch seconds/milliseconds, loaded as UTC datetime."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dt.datetime:
        return parse_instant(value, attr or "instant")


class StrictInteger(fields.Integer):
    """An integer given as a JSON integer: not a boolean, a fraction or text."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{attr} {value!r} is not an integer")
        return int(value)


class StrictBoolean(fields.Boolean):
    """A JSON true or false: not 1, "yes" or "true"."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError(f"{attr} {value!r} is not true or false")
        return value


class StrictNumber(fields.Float):
    """A finite JSON number: not a boolean or text."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValidationError(f"{attr} {value!r} is not a number")
        return float(value)


class AccountSchema(_Base):
    """The account manager's user record, reduced to what statistics need.

    `effective_from` (an extension) dates the contract the record states; without it the record's
    `modified_timestamp` does. The billing terms are extensions too: `billing_day`,
    `large_family` and `bill_budget` (EUR after taxes per billing period; null clears it).
    """

    user_id = fields.String(required=True, validate=USER_ID)
    tarif_type = fields.String(allow_none=True, validate=validate.OneOf(TARIFF_TYPES))
    tariff_type = fields.String(allow_none=True, validate=validate.OneOf(TARIFF_TYPES))
    contracted_power = fields.Raw(allow_none=True)
    country = fields.String(allow_none=True, validate=validate.Length(min=2, max=8))
    postal_code = fields.String(allow_none=True, validate=validate.Length(max=16))
    meter_id = fields.String(allow_none=True, validate=validate.Length(max=128))
    api_key = fields.String(allow_none=True, validate=validate.Length(max=128))
    timezone = fields.String(allow_none=True)
    effective_from = InstantField(allow_none=True)
    modified_timestamp = InstantField(allow_none=True)
    billing_day = StrictInteger(
        allow_none=True,
        validate=validate.Range(
            min=FIRST_BILLING_DAY,
            max=LAST_BILLING_DAY,
            error=f"billing_day must be a day of the month from {FIRST_BILLING_DAY} to {LAST_BILLING_DAY}",
        ),
    )
    large_family = StrictBoolean(allow_none=True)
    bill_budget = StrictNumber(
        allow_none=True,
        validate=validate.Range(
            min=0,
            max=MAX_BILL_BUDGET_EUR,
            min_inclusive=False,
            error=f"bill_budget must be a positive amount of EUR up to {MAX_BILL_BUDGET_EUR:,.0f}"
            " (null clears it)",
        ),
    )

    @validates("timezone")
    def _known_zone(self, value: str | None, **_: Any) -> None:
        if value is None:
            return
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError(f"timezone {value!r} is not an IANA time zone") from None

    @validates("contracted_power")
    def _power(self, value: Any, **_: Any) -> None:
        parse_contracted_power(value)


class SignalValueSchema(_Base):
    """One value of a grid-signal series."""

    timestamp = UtcDateTime(required=True)
    value = fields.Float(required=True, allow_nan=False)


class _SignalSchema(_Base):
    zone = fields.String(required=True, validate=validate.Length(min=2, max=8))
    unit = fields.String(load_default=None)
    resolution_minutes = fields.Integer(
        load_default=60, validate=validate.Range(min=1, max=1440, error="resolution_minutes must be 1..1440")
    )
    values = fields.List(
        fields.Nested(SignalValueSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_SIGNAL_VALUES),
    )


class CarbonIntensitySchema(_SignalSchema):
    """A carbon-intensity series (gCO2eq/kWh) of a zone, actual or forecast."""

    kind = fields.String(required=True, validate=validate.OneOf(("actual", "forecast")))

    @validates_schema
    def _non_negative(self, data: dict[str, Any], **_: Any) -> None:
        if any(item["value"] < 0 for item in data.get("values", [])):
            raise ValidationError("carbon intensity cannot be negative", "values")
        unit = (data.get("unit") or "gCO2eq/kWh").replace("₂", "2").lower()
        if unit not in ("gco2eq/kwh", "gco2/kwh"):
            raise ValidationError(f"unit {data.get('unit')!r} is not gCO2eq/kWh", "unit")


class EnergyPricesSchema(_SignalSchema):
    """A price series (EUR/kWh) of a zone for import or export; prices may be negative."""

    direction = fields.String(required=True, validate=validate.OneOf(("import", "export")))

    @validates_schema
    def _unit(self, data: dict[str, Any], **_: Any) -> None:
        unit = (data.get("unit") or "EUR/kWh").lower()
        if unit not in ("eur/kwh", "€/kwh"):
            raise ValidationError(f"unit {data.get('unit')!r} is not EUR/kWh", "unit")
        if any(abs(item["value"]) > 100 for item in data.get("values", [])):
            raise ValidationError("price beyond ±100 EUR/kWh", "values")


class MockCurveSchema(_Base):
    """Ask for a deterministic mock forecast and real curve of one local day."""

    user_id = fields.String(required=True, validate=USER_ID)
    start_date = UtcDateTime(required=True)
    delivery_time = fields.Integer(required=True, validate=validate.Range(min=15, max=1440))


class ForecastValueSchema(_Base):
    """One forecast value."""

    timestamp = UtcDateTime(required=True)
    energy_kwh = fields.Float(required=True, allow_nan=False, validate=validate.Range(min=0))


class ForecastComputedSchema(_Base):
    """A household's consumption forecast for a day (values inline, or fetched when absent)."""

    user_id = fields.String(required=True, validate=USER_ID)
    forecast_day = fields.Date(required=True)
    interval_minutes = fields.Integer(load_default=15, validate=validate.Range(min=15, max=1440))
    values = fields.List(fields.Nested(ForecastValueSchema), load_default=None, allow_none=True)
    # Who computed the values: a forecast service unless the event says it is the built-in baseline.
    origin = fields.String(load_default="external", validate=validate.OneOf(PUBLISHED_FORECAST_ORIGINS))


class RealDataSchema(_Base):
    """Ask to recompute a household's statistics over a window from stored readings."""

    user_id = fields.String(required=True, validate=USER_ID)
    start_datetime = UtcDateTime(required=True)
    end_datetime = UtcDateTime(load_default=None, allow_none=True)


class UserIdSchema(_Base):
    """Any event that only needs the user id."""

    user_id = fields.String(required=True, validate=USER_ID)
