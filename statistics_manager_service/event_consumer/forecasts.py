"""Fetch the forecasts a batch's events ask for before the batch's transaction opens.

A slow or absent forecast API must not hold a database transaction (nor the households it
locks) open: the batch waits for the API first, then applies everything in one short transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from statistics_manager_service.config import Settings
from statistics_manager_service.event_consumer.curves import FetchedForecast, ForecastRejected, fetch_forecast
from statistics_manager_service.event_consumer.envelope import PoisonMessage, parse_envelope
from statistics_manager_service.event_consumer.handlers import load_payload
from statistics_manager_service.event_producers.outbox import STATISTICS_AGGREGATE
from statistics_manager_service.event_producers.requests import FORECAST_EVENT
from statistics_manager_service.models.events import ForecastComputedSchema

if TYPE_CHECKING:
    from statistics_manager_service.event_consumer.message import Message


def fetch_batch_forecasts(messages: Sequence[Message], settings: Settings) -> dict[str, FetchedForecast]:
    """Fetch the forecast of every ForecastComputedEvent without values, by event id.

    Raise ForecastUnavailable while the API cannot answer (the caller retries the batch later); a
    rejected answer is kept with its reason, for the handler to dead-letter that event alone.
    Messages that are not such events, or not events at all, are left to the processor.
    """
    fetched: dict[str, FetchedForecast] = {}
    url = settings.forecast_api_url
    if not url:
        return fetched
    for message in messages:
        if message.topic != settings.topic(STATISTICS_AGGREGATE):
            continue
        try:
            envelope = parse_envelope(message.value, message.headers)
            if envelope.event_type != FORECAST_EVENT or envelope.event_id in fetched:
                continue
            data = load_payload(ForecastComputedSchema(), envelope.payload)
        except PoisonMessage:
            continue
        if data.get("values"):
            continue
        try:
            values = fetch_forecast(
                url,
                data["user_id"],
                data["forecast_day"],
                settings.forecast_api_timeout_s,
                settings.forecast_api_max_body_bytes,
            )
        except ForecastRejected as error:
            fetched[envelope.event_id] = FetchedForecast(rejected=str(error))
            continue
        fetched[envelope.event_id] = FetchedForecast(values=tuple(values))
    return fetched
