"""The live demo: new readings as wall time passes, through the loader; no duplicates; a bounded catch-up."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from statistics_manager_service.app import create_app
from statistics_manager_service.background import Background
from statistics_manager_service.context import ServiceContext
from statistics_manager_service.demo.live import feed_live, seconds_to_next_tick
from statistics_manager_service.demo.loader import CATCH_UP_DAYS, QUARTER_S, TIMEZONE, load_demo_data
from statistics_manager_service.storage.tables import ReadingDay
from statistics_manager_service.test.event_consumer.kafka_support import wait_until
from statistics_manager_service.test.support.statistics import stored_reading_count

USER = "demohome01"  # a hub household without quirks


def _newest_reading_s(client, headers: dict[str, str]) -> int:  # type: ignore[no-untyped-def]
    response = client.get(f"/api/statistics/energy-consumption-last?user_ids={USER}", headers=headers)
    assert response.status_code == 200, response.text
    return int(dt.datetime.fromisoformat(response.json()[0]["timestamp"]).timestamp())


def test_a_tick_stores_the_newest_readings_and_the_api_returns_them(
    context: ServiceContext, auth_headers: Callable[..., dict[str, str]]
) -> None:
    started = dt.datetime.now(dt.UTC)
    loaded_until = started - dt.timedelta(hours=2)
    load_demo_data(context, days=2, now=loaded_until)
    context.settings = dataclasses.replace(context.settings, demo_live_interval_s=0.2)
    headers = auth_headers(service=True)
    first_s = int(loaded_until.timestamp()) // QUARTER_S * QUARTER_S
    current_s = int(started.timestamp()) // QUARTER_S * QUARTER_S

    app = create_app(context.settings, context=context, validate_responses=True)
    with app.test_client() as client:
        assert _newest_reading_s(client, headers) == first_s
        background = Background()
        background.spawn("demo-live", lambda stop: feed_live(context, stop))
        try:
            wait_until(lambda: _newest_reading_s(client, headers) >= current_s, what="a tick's readings")
        finally:
            background.stop()
        assert not any(thread.is_alive() for thread in background.threads)

        newest_s = _newest_reading_s(client, headers)
        start = dt.datetime.fromtimestamp(first_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        end = dt.datetime.fromtimestamp(newest_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        response = client.get(
            f"/api/statistics/energy-consumption?user_ids={USER}&group_by=15_mins"
            f"&start_date={start}&end_date={end}",
            headers=headers,
        )
        assert response.status_code == 200
        buckets = response.json()[0]["metrics"]
        # Every quarter hour between the loaded demo and the tick is now measured.
        assert [dt.datetime.fromisoformat(b["timestamp"]).timestamp() for b in buckets] == list(
            range(first_s, newest_s, QUARTER_S)
        )
        assert all(b["value"] > 0 for b in buckets)

    # A restart in the same quarter hour sends nothing and stores no reading twice.
    stored = stored_reading_count(context)
    again = load_demo_data(context, now=dt.datetime.fromtimestamp(newest_s, dt.UTC))
    assert again.events_sent == 0
    assert stored_reading_count(context) == stored


def test_after_a_long_stop_only_the_last_days_are_caught_up(context: ServiceContext) -> None:
    zone = ZoneInfo(TIMEZONE)
    now = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    down_days = CATCH_UP_DAYS + 9
    load_demo_data(context, days=2, now=now - dt.timedelta(days=down_days))

    resumed = load_demo_data(context, days=2, now=now)

    assert resumed.dead_letters == 0
    assert resumed.days_skipped == down_days - CATCH_UP_DAYS - 1
    with context.engine.connect() as connection:
        first_ts = connection.execute(
            sa.select(ReadingDay.first_ts).where(ReadingDay.user_id == USER)
        ).scalars()
        days = {dt.datetime.fromtimestamp(ts, zone).date() for ts in first_ts}
    today = now.astimezone(zone).date()
    stopped = today - dt.timedelta(days=down_days)
    expected = {stopped - dt.timedelta(days=1), stopped} | {
        today - dt.timedelta(days=back) for back in range(CATCH_UP_DAYS + 1)
    }
    assert days == expected


def test_ticks_fall_on_multiples_of_the_interval() -> None:
    assert seconds_to_next_tick(900.0, 1_800_000_000.0) == 900.0
    assert seconds_to_next_tick(900.0, 1_800_000_100.0) == 800.0
