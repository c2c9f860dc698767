"""The producer endpoints bound the work one caller can ask for: clipped windows, coalesced
requests and a rate limit per caller."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from statistics_manager_service.app import create_app
from statistics_manager_service.context import ServiceContext
from statistics_manager_service.test.conftest import make_settings
from statistics_manager_service.test.support.pipeline import account_message, meter_message, process, reading

HOME = "clipped001"
FIRST = dt.datetime(2026, 3, 2, 6, 7, tzinfo=dt.UTC)
LAST = FIRST + dt.timedelta(hours=30, minutes=20)
REAL_DATA = "/api/statistics/users-get-real-data-producer"
Headers = Callable[..., dict[str, str]]


@pytest.fixture
def household(context: ServiceContext) -> ServiceContext:
    """A household whose readings run from FIRST to LAST, each hour and at both ends."""
    instants = [FIRST, *(FIRST + dt.timedelta(hours=h) for h in range(1, 31)), LAST]
    readings = [reading(at, 400.0 * index) for index, at in enumerate(instants)]
    assert process(context, [account_message(HOME), meter_message(HOME, readings)]) == []
    return context


def _queued_requests(context: ServiceContext) -> list[tuple[str, dict[str, Any]]]:
    with context.engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT id, payload FROM events WHERE type = 'GetUserRealDataEvent' ORDER BY seq")
        ).all()
    return [(str(event_id), orjson.loads(payload)) for event_id, payload in rows]


def test_a_window_reaching_far_past_the_data_is_clipped_to_the_households_readings(
    client: Any, household: ServiceContext, auth_headers: Headers
) -> None:
    response = client.post(
        f"{REAL_DATA}?user_id={HOME}&start_datetime=2000-01-01T00:00:00Z", headers=auth_headers(user_id=HOME)
    )
    assert response.status_code == 200, response.text
    ((event_id, payload),) = _queued_requests(household)
    assert response.json()["event_id"] == event_id
    assert payload == {
        "user_id": HOME,
        "start_datetime": "2026-03-02T06:07:00Z",
        "end_datetime": "2026-03-03T12:27:00Z",
    }
    # A window inside the data is kept as asked.
    inside = client.post(
        f"{REAL_DATA}?user_id={HOME}&start_datetime=2026-03-02T10:00:00Z&end_datetime=2026-03-02T12:00:00Z",
        headers=auth_headers(user_id=HOME),
    )
    assert inside.status_code == 200
    assert _queued_requests(household)[1][1]["start_datetime"] == "2026-03-02T10:00:00Z"
    assert _queued_requests(household)[1][1]["end_datetime"] == "2026-03-02T12:00:00Z"
    # A window beside the data asks for nothing: a clear 404, and no event.
    beside = client.post(
        f"{REAL_DATA}?user_id={HOME}&start_datetime=2026-04-01T00:00:00Z", headers=auth_headers(user_id=HOME)
    )
    assert beside.status_code == 404
    assert "2026-03-02T06:07:00Z to 2026-03-03T12:27:00Z" in beside.json()["error"]
    assert len(_queued_requests(household)) == 2


def test_a_request_equal_to_a_pending_one_is_the_same_event(
    client: Any, household: ServiceContext, auth_headers: Headers
) -> None:
    first = client.post(
        f"{REAL_DATA}?user_id={HOME}&start_datetime=2000-01-01T00:00:00Z", headers=auth_headers(user_id=HOME)
    )
    # Another window that clips to the same data is the same request.
    second = client.post(
        f"{REAL_DATA}?user_id={HOME}&start_datetime=2001-06-01T00:00:00Z&end_datetime=2026-03-10T00:00:00Z",
        headers=auth_headers(service=True),
    )
    assert first.status_code == second.status_code == 200
    assert first.json()["event_id"] == second.json()["event_id"]
    assert len(_queued_requests(household)) == 1


def test_a_request_equal_to_one_the_relay_gave_up_on_is_queued_anew(
    client: Any, household: ServiceContext, auth_headers: Headers
) -> None:
    url = f"{REAL_DATA}?user_id={HOME}&start_datetime=2000-01-01T00:00:00Z"
    first = client.post(url, headers=auth_headers(user_id=HOME))
    with household.engine.begin() as connection:
        connection.execute(sa.text("UPDATE events SET status = 'failed', failed_reason = 'too large'"))
    second = client.post(url, headers=auth_headers(user_id=HOME))
    assert first.status_code == second.status_code == 200
    assert first.json()["event_id"] != second.json()["event_id"]
    assert [event_id for event_id, _ in _queued_requests(household)] == [
        first.json()["event_id"],
        second.json()["event_id"],
    ]


def test_a_caller_past_its_burst_gets_429_with_retry_after(
    household: ServiceContext, auth_headers: Headers
) -> None:
    settings = make_settings(
        household.settings.database_url, producer_rate_limit_per_minute=2, producer_rate_limit_burst=3
    )
    household.settings = settings
    household.forget_loaded_state()
    with create_app(settings, context=household, validate_responses=True).test_client() as client:
        statuses = [
            client.post(
                f"{REAL_DATA}?user_id={HOME}&start_datetime=2026-03-02T{hour:02d}:00:00Z",
                headers=auth_headers(user_id=HOME),
            )
            for hour in (7, 8, 9, 10)
        ]
        assert [response.status_code for response in statuses] == [200, 200, 200, 429]
        refused = statuses[-1]
        assert int(refused.headers["Retry-After"]) >= 1
        assert "too many producer requests" in refused.json()["error"]
        assert "X-Correlation-ID" in refused.headers
        # Another caller has its own bucket.
        other = client.post(
            f"{REAL_DATA}?user_id={HOME}&start_datetime=2026-03-02T11:00:00Z",
            headers=auth_headers(service=True),
        )
        assert other.status_code == 200
    assert len(_queued_requests(household)) == 4
