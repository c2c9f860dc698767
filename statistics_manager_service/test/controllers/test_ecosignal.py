"""The carbon-intensity forecast as the FlexiHome Energy Manager reads it.

The Energy Manager asks for `/ecosignal-forecast?forecast_day=YYYY-MM-DD` with only `accept` and
`X-Correlation-ID`, parses `datetime` and `updated_at` with `%Y-%m-%dT%H:%M:%SZ`, keeps the items of
the newest `updated_at`, and gives up unless exactly 24 (hourly) or 96 (quarter-hour) remain.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from statistics_manager_service.app import create_app
from statistics_manager_service.context import ServiceContext
from statistics_manager_service.test.conftest import clear_tables
from statistics_manager_service.test.event_consumer.kafka_support import (
    kafka_context,
    producer,
    publish,
    running_workers,
    wait_until,
)
from statistics_manager_service.test.support.kafka_broker import KafkaBroker
from statistics_manager_service.test.support.pipeline import envelope, process, signal_message
from statistics_manager_service.tokens import issue_token

STRICT = "%Y-%m-%dT%H:%M:%SZ"
ZONE = "PT"


def energy_manager_items(items: list[dict[str, Any]]) -> list[tuple[dt.datetime, float]]:
    """What the Energy Manager keeps of an answer, or an AssertionError where it would fail."""
    assert items, "the Energy Manager fails on an empty answer"
    parsed = [
        (
            dt.datetime.strptime(item["datetime"], STRICT),
            dt.datetime.strptime(item["updated_at"], STRICT),
            float(item["value"]),
        )
        for item in items
    ]
    newest = max(updated for _, updated, _ in parsed)
    kept = [(at, value) for at, updated, value in parsed if updated == newest]
    assert len(kept) in (24, 96), f"the Energy Manager needs 24 or 96 items of one run, got {len(kept)}"
    return kept


def intensity(kind: str, first: dt.datetime, values: list[float], minutes: int = 60) -> dict[str, Any]:
    """A CarbonIntensity payload of consecutive values from `first`."""
    return {
        "zone": ZONE,
        "kind": kind,
        "resolution_minutes": minutes,
        "values": [
            {"timestamp": (first + dt.timedelta(minutes=minutes * i)).isoformat(), "value": value}
            for i, value in enumerate(values)
        ],
    }


def day_values(day: dt.date, base: float, per_day: int = 24) -> list[float]:
    """Distinct values for each interval of a day, so that a wrong interval is seen."""
    return [base + i + day.day / 100 for i in range(per_day)]


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def ecosignal(client: Any, query: str, token: str) -> list[dict[str, Any]]:
    """Call as the Energy Manager does: `accept` and `X-Correlation-ID`, and a service's token."""
    response = client.get(
        "/api/statistics/ecosignal-forecast?" + query,
        headers={
            "accept": "application/json",
            "X-Correlation-ID": str(uuid.uuid4()),
            "Authorization": f"Bearer {token}",
        },
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()
    return items


@pytest.fixture
def service(token: Callable[..., str]) -> str:
    """A service's bearer token."""
    return token(service=True)


def store(context: ServiceContext, *payloads: dict[str, Any]) -> None:
    for payload in payloads:  # one event per forecast run: each gets its own update time
        assert process(context, [signal_message("CarbonIntensity", payload)]) == []


def test_a_summer_day_is_the_utc_day_of_24_hourly_values(
    client, context: ServiceContext, service: str
) -> None:  # type: ignore[no-untyped-def]
    day = dt.date(2026, 7, 15)
    # Published the day before for the UTC day, and actual values of the evening before.
    store(
        context,
        intensity("actual", midnight(day) - dt.timedelta(hours=3), [300.0, 310.0, 320.0]),
        intensity("forecast", midnight(day), day_values(day, 100.0)),
    )
    for forecast_day in ("2026-07-15", "2026-07-15T00:00:00.000Z"):
        items = ecosignal(client, f"forecast_day={forecast_day}&zone=PT", service)
        kept = energy_manager_items(items)
        assert kept == [
            (dt.datetime(2026, 7, 15, hour), value) for hour, value in enumerate(day_values(day, 100.0))
        ]
        assert {item["quality"] for item in items} == {0}
        assert [item["source_datetime"] for item in items] == [item["datetime"] for item in items]


@pytest.mark.parametrize(
    ("day", "local_hours"),
    [(dt.date(2026, 3, 29), 23), (dt.date(2026, 10, 25), 25)],
    ids=["spring-forward", "fall-back"],
)
def test_daylight_saving_days_give_24_utc_hours_and_the_local_day_on_request(
    client, context: ServiceContext, service: str, day: dt.date, local_hours: int
) -> None:  # type: ignore[no-untyped-def]
    first = midnight(day) - dt.timedelta(hours=2)
    hourly = [float(200 + i) for i in range(30)]  # 02:00Z the day before .. 04:00Z the day after
    store(context, intensity("forecast", first, hourly))
    kept = energy_manager_items(ecosignal(client, f"forecast_day={day.isoformat()}", service))
    expected = {first + dt.timedelta(hours=i): value for i, value in enumerate(hourly)}
    assert kept == [
        (at.replace(tzinfo=None), expected[at])
        for at in (midnight(day) + dt.timedelta(hours=h) for h in range(24))
    ]

    local = ecosignal(client, f"forecast_day={day.isoformat()}&day_boundary=local", service)
    assert len(local) == local_hours
    local_midnight = dt.datetime.combine(
        day, dt.time(), dt.timezone(dt.timedelta(hours=1 if day.month == 10 else 0))
    )
    starts = [dt.datetime.strptime(item["datetime"], STRICT).replace(tzinfo=dt.UTC) for item in local]
    assert starts[0] == local_midnight
    assert [item["value"] for item in local] == [expected[at] for at in starts]


def test_an_unpublished_day_repeats_the_latest_day_with_data_flagged(
    client, context: ServiceContext, service: str
) -> None:  # type: ignore[no-untyped-def]
    published = dt.date(2026, 7, 14)
    store(
        context,
        intensity("forecast", midnight(published - dt.timedelta(days=1)), day_values(published, 50.0)),
        intensity("forecast", midnight(published), day_values(published, 100.0)),
    )
    for requested in (dt.date(2026, 7, 15), dt.date(2026, 7, 20)):
        items = ecosignal(client, f"forecast_day={requested.isoformat()}", service)
        kept = energy_manager_items(items)
        assert kept == [
            (dt.datetime.combine(requested, dt.time(hour)), value)
            for hour, value in enumerate(day_values(published, 100.0))
        ]
        assert {item["quality"] for item in items} == {1}
        assert items[5]["source_datetime"] == "2026-07-14T05:00:00Z"
    # Before any data: the earliest later day, rather than nothing.
    earlier = ecosignal(client, "forecast_day=2026-06-01", service)
    assert [item["value"] for item in earlier] == day_values(published, 50.0)


def test_a_partly_published_day_is_completed_and_reads_as_one_run(
    client, context: ServiceContext, service: str
) -> None:  # type: ignore[no-untyped-def]
    day = dt.date(2026, 7, 15)
    before = day_values(day - dt.timedelta(days=1), 100.0)
    store(
        context,
        intensity("forecast", midnight(day) - dt.timedelta(days=1), before),
        # Two runs for the day: hours 0-5 first, then hours 3-9 (newer, overriding 3-5).
        intensity("forecast", midnight(day), [10.0, 11.0, 12.0, 13.0, 14.0, 15.0]),
        intensity(
            "forecast", midnight(day) + dt.timedelta(hours=3), [23.0, 24.0, 25.0, 26.0, 27.0, 28.0, 29.0]
        ),
        intensity("actual", midnight(day) + dt.timedelta(hours=10), [40.0]),
    )
    items = ecosignal(client, f"forecast_day={day.isoformat()}", service)
    kept = energy_manager_items(items)
    expected = [10.0, 11.0, 12.0, 23.0, 24.0, 25.0, 26.0, 27.0, 28.0, 29.0, 40.0, *before[11:]]
    assert [value for _, value in kept] == expected
    assert [item["quality"] for item in items] == [0] * 11 + [1] * 13
    assert len({item["updated_at"] for item in items}) == 1


def test_quarter_hour_sources_give_96_values_and_holes_take_the_nearest(
    client, context: ServiceContext, service: str
) -> None:  # type: ignore[no-untyped-def]
    day = dt.date(2026, 1, 21)
    quarters = [float(q) for q in range(96)]
    payload = intensity("forecast", midnight(day), quarters, minutes=15)
    del payload["values"][40:44]
    store(context, payload)
    items = ecosignal(client, f"forecast_day={day.isoformat()}", service)
    kept = energy_manager_items(items)
    # Quarters 40-43 are missing and no other day exists: each takes the nearest value.
    assert [value for _, value in kept] == [*quarters[:40], 39.0, 39.0, 44.0, 44.0, *quarters[44:]]
    assert [item["quality"] for item in items][38:46] == [0, 0, 2, 2, 2, 2, 0, 0]


def test_nothing_stored_for_the_zone_is_an_empty_list(client, context: ServiceContext, service: str) -> None:  # type: ignore[no-untyped-def]
    store(context, {**intensity("forecast", midnight(dt.date(2026, 7, 15)), [1.0]), "zone": "ES"})
    assert ecosignal(client, "forecast_day=2026-07-15&zone=PT", service) == []


def test_forecasts_published_through_the_broker_serve_the_energy_manager(
    postgres_url: str, kafka_broker: KafkaBroker
) -> None:
    context = kafka_context(postgres_url, kafka_broker)
    clear_tables(context.engine)
    try:
        day = dt.date(2026, 7, 15)
        values = day_values(day, 150.0)
        with producer(kafka_broker) as output, running_workers(context):
            payload = intensity("forecast", midnight(day), values)
            publish(
                output, context.settings.topic("grid-signals"), [(ZONE, envelope("CarbonIntensity", payload))]
            )
            token = issue_token(context.settings, service=True)
            query = f"forecast_day={day.isoformat()}&zone=PT"
            with create_app(context.settings, context=context).test_client() as client:
                wait_until(lambda: len(ecosignal(client, query, token)) == 24, what="the forecast stored")
                assert [value for _, value in energy_manager_items(ecosignal(client, query, token))] == values
    finally:
        context.dispose()
