"""Events the producer endpoints queue in the outbox, in the caller's transaction."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.forecasts import BASELINE_WEEKS, BaselineForecast
from statistics_manager_service.aggregation.localtime import utc_text
from statistics_manager_service.event_producers.outbox import NewEvent, add_events, pending_event_id
from statistics_manager_service.exception_handling_utils.errors import (
    NoForecastHistory,
    NotFound,
    UserNotFound,
)
from statistics_manager_service.recompute import StatisticsUpdater
from statistics_manager_service.recompute.forecasts import baseline_forecast
from statistics_manager_service.storage.households import erased_user_ids, known_user_ids
from statistics_manager_service.storage.readings import reading_span

MOCK_CURVE_EVENT = "ComputeMockConsumptionCurveEvent"
FORECAST_EVENT = "ForecastComputedEvent"
REAL_DATA_EVENT = "GetUserRealDataEvent"


def _utc_text(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _require_household(session: Session, user_id: str) -> None:
    if user_id in erased_user_ids(session, [user_id]) or not known_user_ids(session, [user_id]):
        raise UserNotFound(user_id)


def queue_event(
    session: Session, event_type: str, user_id: str, payload: dict[str, Any], coalesce: bool = True
) -> dict[str, str]:
    """Queue `event_type` for a known household; answer what the endpoint returns.

    With `coalesce`, a request equal to one still queued (same household, type and payload) is
    answered with that event instead of queuing a second one.
    """
    _require_household(session, user_id)
    return _queue_checked(session, event_type, user_id, payload, coalesce)


def _queue_checked(
    session: Session, event_type: str, user_id: str, payload: dict[str, Any], coalesce: bool
) -> dict[str, str]:
    """`queue_event` for a household the caller has found to exist."""
    body = {"user_id": user_id, **payload}
    event_id = pending_event_id(session, event_type, user_id, body) if coalesce else None
    if event_id is None:
        (event_id,) = add_events(session, [NewEvent(event_type, user_id, body)])
    return {"event_id": event_id, "event_type": event_type, "status": "accepted"}


def queue_real_data_request(
    session: Session, user_id: str, start: dt.datetime, end: dt.datetime | None, coalesce: bool = True
) -> dict[str, str]:
    """Queue a recompute of the household's window, clipped to its stored readings.

    A window reaching before the first reading or past the last (a start in 2000, say) would
    make the consumer plan and rewrite days that hold nothing.
    """
    _require_household(session, user_id)
    first_s, last_s = reading_span(session, user_id)
    start_s = int(start.timestamp())
    if first_s is None or last_s is None:
        raise NotFound(f"user {user_id} has no stored readings to recompute from")
    end_s = last_s if end is None else int(end.timestamp())
    if end_s <= first_s or start_s >= last_s:
        raise NotFound(
            f"user {user_id} has no readings between start_datetime and end_datetime (its readings run"
            f" from {utc_text(first_s)} to {utc_text(last_s)}); choose a window that overlaps them"
        )
    clipped_start = dt.datetime.fromtimestamp(max(start_s, first_s), dt.UTC)
    clipped_end = dt.datetime.fromtimestamp(min(end_s, last_s), dt.UTC)
    return _queue_checked(
        session, REAL_DATA_EVENT, user_id, real_data_payload(clipped_start, clipped_end), coalesce
    )


def mock_curve_payload(start: dt.datetime, delivery_time_min: int) -> dict[str, Any]:
    """Payload of a mock-curve request."""
    return {"start_date": _utc_text(start), "delivery_time": delivery_time_min}


def forecast_payload(day: dt.date) -> dict[str, Any]:
    """Payload of a forecast request (the values are fetched by the handler)."""
    return {"forecast_day": day.isoformat()}


def baseline_payload(forecast: BaselineForecast) -> dict[str, Any]:
    """Payload of a forecast computed by the built-in baseline: its values travel in the event."""
    return {
        "forecast_day": forecast.day.isoformat(),
        "interval_minutes": 15,
        "origin": "baseline",
        "history_weeks": forecast.history_weeks,
        "values": [
            {"timestamp": utc_text(start_s), "energy_kwh": energy}
            for start_s, energy in zip(
                forecast.starts_s.tolist(), forecast.energies_kwh.tolist(), strict=True
            )
        ],
    }


def queue_forecast(
    session: Session,
    user_id: str,
    day: dt.date,
    baseline_from: StatisticsUpdater | None,
    coalesce: bool = True,
) -> dict[str, str]:
    """Queue a household's forecast of a day: the built-in baseline computed from `baseline_from`'s
    statistics, or (None) a request the handler answers by asking the forecast service."""
    if baseline_from is None:
        return queue_event(session, FORECAST_EVENT, user_id, forecast_payload(day), coalesce)
    _require_household(session, user_id)
    forecast = baseline_forecast(session, baseline_from, user_id, day)
    if forecast.history_weeks == 0:
        raise NoForecastHistory(user_id, day.isoformat(), f"{day:%A}", BASELINE_WEEKS)
    return _queue_checked(session, FORECAST_EVENT, user_id, baseline_payload(forecast), coalesce)


def real_data_payload(start: dt.datetime, end: dt.datetime | None) -> dict[str, Any]:
    """Payload of a recompute-from-stored-readings request."""
    return {"start_datetime": _utc_text(start), "end_datetime": None if end is None else _utc_text(end)}
