"""Events the producer endpoints queue in the outbox, in the caller's transaction."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from statistics_manager_service.event_producers.outbox import NewEvent, add_events
from statistics_manager_service.exception_handling_utils.errors import UserNotFound
from statistics_manager_service.storage.households import erased_user_ids, known_user_ids

MOCK_CURVE_EVENT = "ComputeMockConsumptionCurveEvent"
FORECAST_EVENT = "ForecastComputedEvent"
REAL_DATA_EVENT = "GetUserRealDataEvent"


def _utc_text(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def queue_event(session: Session, event_type: str, user_id: str, payload: dict[str, Any]) -> dict[str, str]:
    """Queue `event_type` for a known household; answer what the endpoint returns."""
    if user_id in erased_user_ids(session, [user_id]) or not known_user_ids(session, [user_id]):
        raise UserNotFound(user_id)
    (event_id,) = add_events(session, [NewEvent(event_type, user_id, {"user_id": user_id, **payload})])
    return {"event_id": event_id, "event_type": event_type, "status": "accepted"}


def mock_curve_payload(start: dt.datetime, delivery_time_min: int) -> dict[str, Any]:
    """Payload of a mock-curve request."""
    return {"start_date": _utc_text(start), "delivery_time": delivery_time_min}


def forecast_payload(day: dt.date) -> dict[str, Any]:
    """Payload of a forecast request (the values are fetched by the handler)."""
    return {"forecast_day": day.isoformat()}


def real_data_payload(start: dt.datetime, end: dt.datetime | None) -> dict[str, Any]:
    """Payload of a recompute-from-stored-readings request."""
    return {"start_datetime": _utc_text(start), "end_datetime": None if end is None else _utc_text(end)}
