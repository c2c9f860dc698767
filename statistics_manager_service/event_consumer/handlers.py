"""Event handlers: plain functions of (session, payload, services); testable without Kafka."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import pandas as pd
from marshmallow import Schema, ValidationError
from sqlalchemy.orm import Session

from statistics_manager_service import metrics
from statistics_manager_service.aggregation.billing import CLEARED_BUDGET_EUR
from statistics_manager_service.aggregation.granularity import BUCKET_SECONDS, LEVELS
from statistics_manager_service.aggregation.localtime import local_day_bounds, utc_text
from statistics_manager_service.config import Settings
from statistics_manager_service.event_consumer.alert_rules import ALERT_EVENT_TYPES
from statistics_manager_service.event_consumer.curves import FetchedForecast, local_day_holding, mock_curves
from statistics_manager_service.event_consumer.envelope import PoisonMessage
from statistics_manager_service.event_producers.outbox import NewEvent, add_events
from statistics_manager_service.models import events as schemas
from statistics_manager_service.recompute import Recomputed, StatisticsUpdater
from statistics_manager_service.recompute.zones import covered_windows, recompute_zone_chunk
from statistics_manager_service.storage import households as household_store
from statistics_manager_service.storage.contracts import NewContractVersion
from statistics_manager_service.storage.curves import upsert_curve
from statistics_manager_service.storage.pending import add_pending, claim_pending
from statistics_manager_service.storage.signals import upsert_intensity, upsert_prices
from statistics_manager_service.storage.tables import Household
from statistics_manager_service.storage.windows import rows_of

logger = logging.getLogger(__name__)

ACCOUNT_EVENTS = ("UserRegistered", "UserUpdated")
DEVICE_EVENTS = ("UserAddedDongleApiKey", "UserUpdatedDongleApiKey")
ERASE_EVENT = "UserHardDeleted"
OWN_ANNOUNCEMENTS = ("StatisticsUpdated", "DailyStatisticsClosed", *ALERT_EVENT_TYPES)


@dataclasses.dataclass(frozen=True)
class EventMeta:
    """What the envelope and the record say of an event besides its payload."""

    event_id: str
    # The envelope's timestamp, else the broker record's; None when neither says.
    event_time: dt.datetime | None = None
    # A forecast event's values, fetched before the batch's transaction opened.
    forecast: FetchedForecast | None = None


@dataclasses.dataclass
class Services:
    """What handlers need besides the session."""

    settings: Settings
    updater: StatisticsUpdater


def load_payload(schema: Schema, payload: dict[str, Any]) -> dict[str, Any]:
    """Validate a payload; raise PoisonMessage naming every bad field."""
    try:
        loaded: dict[str, Any] = schema.load(payload)
    except ValidationError as error:
        raise PoisonMessage(f"invalid payload: {_describe(error.messages)}") from None
    return loaded


def _describe(messages: Any, prefix: str = "") -> str:
    if isinstance(messages, dict):
        parts = [
            _describe(value, f"{prefix}{key}." if prefix or key != "_schema" else "")
            for key, value in messages.items()
        ]
        return "; ".join(parts)
    if isinstance(messages, list):
        return f"{prefix.rstrip('.') or 'payload'}: " + ", ".join(str(m) for m in messages)
    return f"{prefix.rstrip('.')}: {messages}"


def announce_updates(session: Session, recomputed: Recomputed, cause: str) -> None:
    """Queue one StatisticsUpdated per household whose buckets were rewritten."""
    granularity = LEVELS[0].name  # the windows are of 15-minute buckets
    add_events(
        session,
        [
            NewEvent(
                "StatisticsUpdated",
                user_id,
                {
                    "user_id": user_id,
                    "granularity": granularity,
                    "start": utc_text(start_s),
                    "end": utc_text(end_s),
                    "cause": cause,
                },
            )
            for user_id, start_s, end_s in rows_of(recomputed.windows, ["user_id", "start_s", "end_s"])
        ],
    )


# ---- account events ---------------------------------------------------------------------


def handle_account(session: Session, payload: dict[str, Any], services: Services, event: EventMeta) -> None:
    """Keep the household, its devices and its contract history; recompute what a new contract
    version changes, from the instant it took effect."""
    data = load_payload(schemas.AccountSchema(), payload)
    user_id = data["user_id"]
    if household_store.erased_user_ids(session, [user_id]):
        raise PoisonMessage(f"user {user_id} was erased")
    # A new household starts from the defaults; its contract comes with its first version below.
    household_store.upsert_household(
        session, user_id, {"postal_code": data.get("postal_code"), "meter_id": data.get("meter_id")}
    )
    for device_id, kind in ((data.get("meter_id"), "meter"), (data.get("api_key"), "dongle")):
        if device_id:
            _map_device(session, device_id, user_id, kind)
    recomputed = services.updater.apply_contract_version(session, _contract_version(data, event))
    if not recomputed.windows.empty:
        announce_updates(session, recomputed, "account")


def _contract_version(data: dict[str, Any], event: EventMeta) -> NewContractVersion:
    """The contract (and billing terms) an account record states, dated by its effective date,
    else the account manager's modification time, else the event's time (else now)."""
    modified = data.get("modified_timestamp")
    event_time = event.event_time
    if data.get("effective_from") is not None:
        effective, source = data["effective_from"], "effective_from"
    elif modified is not None:
        effective, source = modified, "modified_timestamp"
    else:
        effective, source = event_time or dt.datetime.now(dt.UTC), "event_time"
    # Of two versions effective at one instant, the one modified (else sent) last wins.
    ranked_by = modified or event_time or effective
    return NewContractVersion(
        user_id=data["user_id"],
        effective_s=int(effective.timestamp()),
        effective_source=source,
        tariff_type=data.get("tariff_type") or data.get("tarif_type"),
        contracted_power_kva=schemas.parse_contracted_power(data.get("contracted_power")),
        zone=(data.get("country") or "").upper() or None,
        timezone=data.get("timezone"),
        modified_ms=int(ranked_by.timestamp() * 1000),
        event_id=event.event_id,
        billing_day=data.get("billing_day"),
        large_family=data.get("large_family"),
        bill_budget_eur=_bill_budget(data),
    )


def _bill_budget(data: dict[str, Any]) -> float | None:
    """The budget a record states: absent is not stated, null clears it (stored as 0)."""
    if "bill_budget" not in data:
        return None
    budget = data["bill_budget"]
    return CLEARED_BUDGET_EUR if budget is None else float(budget)


def handle_device(session: Session, payload: dict[str, Any], services: Services, event: EventMeta) -> None:
    """Map a dongle API key to its user."""
    data = load_payload(schemas.AccountSchema(), payload)
    if not data.get("api_key"):
        raise PoisonMessage("invalid payload: api_key: missing")
    if household_store.erased_user_ids(session, [data["user_id"]]):
        raise PoisonMessage(f"user {data['user_id']} was erased")
    household_store.ensure_households(session, [data["user_id"]])
    _map_device(session, data["api_key"], data["user_id"], "dongle")


def _map_device(session: Session, device_id: str, user_id: str, kind: str) -> None:
    """Map a device id to its user; a device moving from one household to another is logged and
    counted (its later readings go to the new household, its earlier ones stay where they are)."""
    previous = household_store.map_device(session, device_id, user_id, kind)
    if previous is not None and previous != user_id:
        logger.warning("%s %r moved from household %s to %s", kind, device_id, previous, user_id)
        metrics.DEVICE_MOVES.inc()


def handle_erase(session: Session, payload: dict[str, Any], services: Services, event: EventMeta) -> None:
    """Erase every row about the user and tombstone the id."""
    data = load_payload(schemas.UserIdSchema(), payload)
    household_store.erase_user(session, data["user_id"])
    logger.info("erased every record of user %s", data["user_id"])


# ---- grid signals -----------------------------------------------------------------------


def _signal_rows(
    data: dict[str, Any], kind_key: str, settings: Settings
) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
    """The rows to store and the windows they cover; raise PoisonMessage for a value outside
    [now - SIGNAL_MAX_AGE_DAYS, now + SIGNAL_MAX_FUTURE_DAYS]."""
    now = dt.datetime.now(dt.UTC)
    oldest = now - dt.timedelta(days=settings.signal_max_age_days)
    latest = now + dt.timedelta(days=settings.signal_max_future_days)
    for item in data["values"]:
        if item["timestamp"] < oldest:
            raise PoisonMessage(
                f"value at {item['timestamp'].isoformat()} is older than SIGNAL_MAX_AGE_DAYS "
                f"({settings.signal_max_age_days} days)"
            )
        if item["timestamp"] > latest:
            raise PoisonMessage(
                f"value at {item['timestamp'].isoformat()} is more than SIGNAL_MAX_FUTURE_DAYS "
                f"({settings.signal_max_future_days} days) ahead"
            )
    resolution_s = int(data["resolution_minutes"]) * 60
    rows = [
        {
            "zone": data["zone"].upper(),
            kind_key: data[kind_key],
            "ts": int(item["timestamp"].timestamp()),
            "resolution_s": resolution_s,
            "value": float(item["value"]),
        }
        for item in data["values"]
    ]
    # A later value in the same event for the same interval wins.
    unique = list({row["ts"]: row for row in rows}.values())
    return unique, covered_windows([row["ts"] for row in unique], resolution_s)


def _recompute_zone(
    session: Session,
    services: Services,
    zone: str,
    windows: list[tuple[int, int]],
    cause: str,
    tariff_type: str | None = None,
) -> None:
    """Recompute the first chunk of the zone's households over the first window now; record the
    rest for the workers (`recompute_pending`), so no transaction touches more than
    RECOMPUTE_HOUSEHOLDS_PER_TRANSACTION households."""
    services.updater.lock_zone(session, zone)  # before listing: no concurrent household is missed
    recomputed, after = recompute_zone_chunk(
        session,
        services.updater,
        zone,
        tariff_type,
        windows[0],
        cause,
        "",
        services.settings.recompute_households_per_transaction,
    )
    announce_updates(session, recomputed, cause)
    if after is not None:
        add_pending(session, zone, tariff_type or "", windows[:1], cause, after)
    if len(windows) > 1:
        add_pending(session, zone, tariff_type or "", windows[1:], cause, "")


def handle_carbon_intensity(
    session: Session, payload: dict[str, Any], services: Services, event: EventMeta
) -> None:
    """Store an intensity series and recompute the CO2 of the zone's households over it."""
    data = load_payload(schemas.CarbonIntensitySchema(), payload)
    rows, windows = _signal_rows(data, "kind", services.settings)
    upsert_intensity(session, rows)
    _recompute_zone(session, services, data["zone"].upper(), windows, "intensity")


def handle_energy_prices(
    session: Session, payload: dict[str, Any], services: Services, event: EventMeta
) -> None:
    """Store a price series and recompute the cost of the zone's dynamic-tariff households."""
    data = load_payload(schemas.EnergyPricesSchema(), payload)
    rows, windows = _signal_rows(data, "direction", services.settings)
    upsert_prices(session, rows)
    _recompute_zone(session, services, data["zone"].upper(), windows, "prices", tariff_type="dynamic")


def recompute_pending(session: Session, services: Services) -> bool:
    """Do one chunk of a recorded zone-wide recomputation; tell whether there was one."""
    pending = claim_pending(session)
    if pending is None:
        return False
    recomputed, after = recompute_zone_chunk(
        session,
        services.updater,
        pending.zone,
        pending.scope or None,
        (pending.start_s, pending.end_s),
        pending.cause,
        pending.after_user_id,
        services.settings.recompute_households_per_transaction,
    )
    announce_updates(session, recomputed, pending.cause)
    if after is None:
        session.delete(pending)
    else:
        pending.after_user_id = after
    return True


# ---- the service's own events -----------------------------------------------------------


def _household_timezone(session: Session, user_id: str, services: Services) -> str:
    if household_store.erased_user_ids(session, [user_id]):
        raise PoisonMessage(f"user {user_id} was erased")
    household = session.get(Household, user_id)
    if household is None:
        raise PoisonMessage(f'user with id "{user_id}" not found')
    return household.timezone or services.settings.default_timezone


def handle_mock_curve(
    session: Session, payload: dict[str, Any], services: Services, event: EventMeta
) -> None:
    """Store a deterministic mock forecast and real curve for the household's local day."""
    data = load_payload(schemas.MockCurveSchema(), payload)
    tz = _household_timezone(session, data["user_id"], services)
    start_s, end_s, _ = local_day_holding(data["start_date"], tz)
    interval_s = int(data["delivery_time"]) * 60
    starts, forecast, real = mock_curves(data["user_id"], start_s, end_s, interval_s, tz)
    upsert_curve(session, data["user_id"], "forecast", starts, forecast, interval_s, origin="mock")
    upsert_curve(session, data["user_id"], "mock_real", starts, real, interval_s, origin="mock")


def handle_forecast(session: Session, payload: dict[str, Any], services: Services, event: EventMeta) -> None:
    """Store a household's forecast for a day, fetching it when the event carries no values."""
    data = load_payload(schemas.ForecastComputedSchema(), payload)
    user_id = data["user_id"]
    tz = _household_timezone(session, user_id, services)
    interval_s = int(data["interval_minutes"]) * 60
    values = data.get("values")
    origin = data["origin"]
    if not values:
        if not services.settings.forecast_api_url:
            raise PoisonMessage(
                "forecast event has no values and FORECAST_API_URL is not set "
                "(the forecast endpoint sends the built-in baseline's values in the event)"
            )
        if event.forecast is None:
            # Fetching here would hold the batch's transaction open on the API.
            raise RuntimeError("the forecast was not fetched before the batch's transaction")
        if event.forecast.rejected:
            raise PoisonMessage(event.forecast.rejected)
        origin = "external"
        values = [{"timestamp": instant, "energy_kwh": energy} for instant, energy in event.forecast.values]
    start_s, end_s = local_day_bounds(data["forecast_day"], tz)
    starts = [int(v["timestamp"].timestamp()) for v in values]
    inside = [
        (s, float(v["energy_kwh"])) for s, v in zip(starts, values, strict=True) if start_s <= s < end_s
    ]
    if not inside:
        raise PoisonMessage("no forecast value falls on the forecast day")
    upsert_curve(
        session, user_id, "forecast", [s for s, _ in inside], [e for _, e in inside], interval_s, origin
    )


def handle_real_data(session: Session, payload: dict[str, Any], services: Services, event: EventMeta) -> None:
    """Recompute a household's statistics over a window from the stored readings."""
    data = load_payload(schemas.RealDataSchema(), payload)
    _household_timezone(session, data["user_id"], services)
    start = int(data["start_datetime"].timestamp())
    end = int((data.get("end_datetime") or dt.datetime.now(dt.UTC)).timestamp())
    if end <= start:
        raise PoisonMessage("end_datetime is not after start_datetime")
    windows = pd.DataFrame(
        {"user_id": [data["user_id"]], "start_s": [start // BUCKET_SECONDS * BUCKET_SECONDS], "end_s": [end]}
    )
    recomputed = services.updater.recompute_windows(session, windows, cause="request")
    announce_updates(session, recomputed, "request")


def handle_own_announcement(
    session: Session, payload: dict[str, Any], services: Services, event: EventMeta
) -> None:
    """Our own announcements need no work here; they are for other services."""


Handler = Callable[[Session, dict[str, Any], Services, EventMeta], None]

# Event types per topic short name; MeterReadings are batched by the processor, not listed here.
HANDLERS: dict[str, dict[str, Handler]] = {
    "user-account": {
        **dict.fromkeys(ACCOUNT_EVENTS, handle_account),
        **dict.fromkeys(DEVICE_EVENTS, handle_device),
        ERASE_EVENT: handle_erase,
    },
    "grid-signals": {"CarbonIntensity": handle_carbon_intensity, "EnergyPrices": handle_energy_prices},
    "statistics": {
        "ComputeMockConsumptionCurveEvent": handle_mock_curve,
        "ForecastComputedEvent": handle_forecast,
        "GetUserRealDataEvent": handle_real_data,
        **dict.fromkeys(OWN_ANNOUNCEMENTS, handle_own_announcement),
    },
}
# Topics whose unknown event types are someone else's business: skipped, not dead-lettered.
SHARED_TOPICS = frozenset({"user-account"})
# Every event type some handler knows, whatever the topic: the values a metric label may take.
KNOWN_EVENT_TYPES = frozenset(event_type for handlers in HANDLERS.values() for event_type in handlers)
