"""ORM tables. Instants are epoch seconds (UTC) in BIGINT columns, as Home Assistant's
statistics do: identical on PostgreSQL and SQLite, compact, and free of time-zone drift."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT.
AutoIncrementId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base with constraint names stable across databases."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Household(Base):
    """A user of the account manager as this service needs it: tariff, zone, time zone."""

    __tablename__ = "households"

    user_id: Mapped[str] = mapped_column(String(10), primary_key=True)
    tariff_type: Mapped[str] = mapped_column(String(16), default="simple")
    contracted_power_kva: Mapped[float | None] = mapped_column(Float)
    zone: Mapped[str] = mapped_column(String(8), default="PT")
    postal_code: Mapped[str | None] = mapped_column(String(16))
    timezone: Mapped[str | None] = mapped_column(String(64))
    meter_id: Mapped[str | None] = mapped_column(String(128))
    # The source the statistics are computed from: the best one that ever reported.
    statistics_source: Mapped[str | None] = mapped_column(String(16))
    # First and last reading times of the statistics source: where history starts and ends.
    first_reading_ts: Mapped[int | None] = mapped_column(BigInteger)
    last_reading_ts: Mapped[int | None] = mapped_column(BigInteger)
    # End (epoch s) of the last local day announced as closed.
    closed_through: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class ContractVersion(Base):
    """One version of a household's contract, in force from `effective_from` until the next one.

    A NULL field was not stated by the version: the value in force before it holds on. The billing
    terms (`billing_day`, `large_family`, `bill_budget_eur`) price no bucket; they shape the bill.
    A `bill_budget_eur` of 0 is a version that cleared the budget (budgets are positive).
    """

    __tablename__ = "contract_versions"

    user_id: Mapped[str] = mapped_column(String(10), primary_key=True)
    effective_from: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # Where the effective instant came from: effective_from, modified_timestamp, event_time or initial.
    effective_source: Mapped[str] = mapped_column(String(24))
    tariff_type: Mapped[str | None] = mapped_column(String(16))
    contracted_power_kva: Mapped[float | None] = mapped_column(Float)
    zone: Mapped[str | None] = mapped_column(String(8))
    timezone: Mapped[str | None] = mapped_column(String(64))
    # The day of the month (1-28) the household's billing periods start on.
    billing_day: Mapped[int | None] = mapped_column(SmallInteger)
    # A large family (família numerosa) has a larger reduced-VAT allowance.
    large_family: Mapped[bool | None] = mapped_column(Boolean)
    # The household's budget for one billing period, EUR after taxes; 0: no budget.
    bill_budget_eur: Mapped[float | None] = mapped_column(Float)
    # Of two versions with one effective instant, the one modified last (ms) wins, then the event id.
    modified_ms: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[int] = mapped_column(BigInteger)


class DeviceMapping(Base):
    """A dongle API key or meter id that reports readings for a user."""

    __tablename__ = "device_mappings"

    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(10), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[int] = mapped_column(BigInteger)


class ErasedUser(Base):
    """Tombstone of a hard-deleted user: later readings for it are refused, not resurrected."""

    __tablename__ = "erased_users"

    user_id: Mapped[str] = mapped_column(String(10), primary_key=True)
    erased_at: Mapped[int] = mapped_column(BigInteger)


class ReadingDay(Base):
    """The readings of one household, source and UTC day, as packed column arrays.

    `ts_offsets` holds little-endian int32 seconds since `day`; each value column holds
    little-endian float64 values in the same order, NaN where a reading lacks the value, NULL
    where no reading of the day has it. Registers are cumulative, in Wh. One row replaces ~96.
    """

    __tablename__ = "reading_days"

    user_id: Mapped[str] = mapped_column(String(10), primary_key=True)
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    day: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    reading_count: Mapped[int] = mapped_column(Integer)
    first_ts: Mapped[int] = mapped_column(BigInteger)
    last_ts: Mapped[int] = mapped_column(BigInteger)
    ts_offsets: Mapped[bytes] = mapped_column(LargeBinary)
    energy_imported_wh: Mapped[bytes] = mapped_column(LargeBinary)
    energy_exported_wh: Mapped[bytes] = mapped_column(LargeBinary)
    energy_generated_wh: Mapped[bytes | None] = mapped_column(LargeBinary)
    power_imported_w: Mapped[bytes | None] = mapped_column(LargeBinary)
    power_exported_w: Mapped[bytes | None] = mapped_column(LargeBinary)
    voltage_v: Mapped[bytes | None] = mapped_column(LargeBinary)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class StatisticsPeriod(Base):
    """Statistics of one household over one local day, ISO week, month or year.

    Quarter hours and hours are computed from `reading_days` when asked for.
    """

    __tablename__ = "statistics_periods"

    user_id: Mapped[str] = mapped_column(String(10), primary_key=True)
    granularity: Mapped[str] = mapped_column(String(8), primary_key=True)
    period_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    energy_imported_kwh: Mapped[float] = mapped_column(Float, default=0.0)
    energy_exported_kwh: Mapped[float] = mapped_column(Float, default=0.0)
    energy_generated_kwh: Mapped[float | None] = mapped_column(Float)
    self_consumed_kwh: Mapped[float] = mapped_column(Float, default=0.0)
    consumption_kwh: Mapped[float] = mapped_column(Float, default=0.0)
    power_imported_mean_w: Mapped[float | None] = mapped_column(Float)
    power_imported_max_w: Mapped[float | None] = mapped_column(Float)
    power_exported_mean_w: Mapped[float | None] = mapped_column(Float)
    power_exported_max_w: Mapped[float | None] = mapped_column(Float)
    power_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    voltage_mean_v: Mapped[float | None] = mapped_column(Float)
    voltage_min_v: Mapped[float | None] = mapped_column(Float)
    voltage_max_v: Mapped[float | None] = mapped_column(Float)
    voltage_count: Mapped[int] = mapped_column(BigInteger, default=0)
    span_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    covered_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    reading_count: Mapped[int] = mapped_column(BigInteger, default=0)
    reset_detected: Mapped[bool] = mapped_column(Boolean, default=False)
    energy_cost_eur: Mapped[float] = mapped_column(Float, default=0.0)
    fixed_cost_eur: Mapped[float] = mapped_column(Float, default=0.0)
    export_revenue_eur: Mapped[float] = mapped_column(Float, default=0.0)
    net_cost_eur: Mapped[float] = mapped_column(Float, default=0.0)
    co2_kg: Mapped[float] = mapped_column(Float, default=0.0)
    co2_avoided_kg: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class EnergyPrice(Base):
    """A dynamic-tariff price holding for [ts, ts + resolution_s) in a zone."""

    __tablename__ = "energy_prices"

    zone: Mapped[str] = mapped_column(String(8), primary_key=True)
    direction: Mapped[str] = mapped_column(String(8), primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    resolution_s: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class CarbonIntensity(Base):
    """A carbon intensity (gCO2eq/kWh) holding for [ts, ts + resolution_s) in a zone."""

    __tablename__ = "carbon_intensity"

    zone: Mapped[str] = mapped_column(String(8), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    resolution_s: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class ConsumptionCurve(Base):
    """A forecast (or mock real) consumption curve value of a household, labelled with its origin."""

    __tablename__ = "consumption_curves"

    user_id: Mapped[str] = mapped_column(String(10), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    interval_s: Mapped[int] = mapped_column(Integer)
    energy_kwh: Mapped[float] = mapped_column(Float)
    computed_at: Mapped[int] = mapped_column(BigInteger)
    # Where the values come from (`aggregation.forecasts.FORECAST_ORIGINS`).
    origin: Mapped[str] = mapped_column(String(16), server_default="external")


class ProcessedEvent(Base):
    """An event id whose effects are committed; a redelivery of it changes nothing."""

    __tablename__ = "processed_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64))
    processed_at: Mapped[int] = mapped_column(BigInteger, index=True)


OUTBOX_PENDING = "pending"
OUTBOX_FAILED = "failed"


class OutboxEvent(Base):
    """The transactional outbox, with the columns Debezium's outbox router expects; a row is deleted
    once the relay has published it. A row the relay could not publish after a few attempts is
    kept as `failed`, with its reason, until an operator sets it back to `pending`."""

    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(AutoIncrementId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    aggregatetype: Mapped[str] = mapped_column(String(64))
    aggregateid: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(64))
    timestamp: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[str] = mapped_column(Text)
    # Of the request or message that queued the event; sent as Kafka headers by the relay.
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    traceparent: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), server_default=OUTBOX_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    failed_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class ServiceState(Base):
    """Small facts the service keeps between runs, such as the tariff book fingerprint."""

    __tablename__ = "service_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class PendingRecompute(Base):
    """The rest of a zone-wide recomputation after a grid signal: the zone's households (of a
    tariff type, or all with `scope` "") after `after_user_id`, over [start_s, end_s)."""

    __tablename__ = "pending_recomputes"

    zone: Mapped[str] = mapped_column(String(8), primary_key=True)
    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    start_s: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    end_s: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    cause: Mapped[str] = mapped_column(String(16))
    after_user_id: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[int] = mapped_column(BigInteger)


class PeerGroupRow(Base):
    """One group of comparable households over a month (`period`, YYYY-MM) as the periodic job last
    computed it: how many households count and, from 10 on, the percentiles 1 to 99 of their
    consumption (a JSON list of kWh) and the median and 20th percentile shown. No household's id is
    kept."""

    __tablename__ = "peer_groups"

    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    zone: Mapped[str] = mapped_column(String(8), primary_key=True)
    tariff_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    power_band: Mapped[str] = mapped_column(String(16), primary_key=True)
    pv: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    households: Mapped[int] = mapped_column(Integer)
    percentiles_kwh: Mapped[str | None] = mapped_column(Text)
    # What households are shown: blends of at least three households (`published_percentile`).
    median_kwh: Mapped[float | None] = mapped_column(Float)
    efficient_kwh: Mapped[float | None] = mapped_column(Float)
    # The local days compared: the 1st of the month to `last_day` (ISO dates), whole when `complete`.
    first_day: Mapped[str] = mapped_column(String(10))
    last_day: Mapped[str] = mapped_column(String(10))
    complete: Mapped[bool] = mapped_column(Boolean)
    computed_at: Mapped[int] = mapped_column(BigInteger)


class AlertSent(Base):
    """An alert queued in the outbox for a household, cause and local day: one at most, whatever
    the redeliveries and the workers (written in the transaction of its outbox event)."""

    __tablename__ = "alerts_sent"

    user_id: Mapped[str] = mapped_column(String(10), primary_key=True)
    cause: Mapped[str] = mapped_column(String(24), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[int] = mapped_column(BigInteger)


class AlertProgress(Base):
    """How far the alert job has checked a household: the end (epoch s) of the last local day
    checked, compared with `households.closed_through`. Kept apart from `households`, whose rows
    the ingestion locks, so that the job never waits for a batch or makes one wait."""

    __tablename__ = "alert_progress"

    user_id: Mapped[str] = mapped_column(String(10), primary_key=True)
    checked_through: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
