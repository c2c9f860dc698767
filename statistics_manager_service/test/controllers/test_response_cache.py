"""The response cache of historic series: what it stores, and that no change outlives its announcement.

The pure cache is tested alone; the rest runs against PostgreSQL with the real change listener: the
triggers of migration 0002 announce changes, and every cached answer must equal a fresh one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import psycopg2
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from statistics_manager_service import metrics
from statistics_manager_service.app import create_app
from statistics_manager_service.context import ServiceContext, build_context
from statistics_manager_service.models.events import EARLIEST_READING
from statistics_manager_service.query import cache as cache_module
from statistics_manager_service.query.cache import ResponseCache
from statistics_manager_service.query.notifications import CHANNEL, ChangeListener
from statistics_manager_service.storage import migrate
from statistics_manager_service.storage.engine import make_engine
from statistics_manager_service.test.conftest import (
    create_postgres_database,
    drop_postgres_database,
    make_settings,
    terminate_backends,
)
from statistics_manager_service.test.support.pipeline import (
    account_message,
    envelope,
    message,
    meter_message,
    process,
    reading,
    signal_message,
)

USER, OTHER = "cachehome1", "otherhome1"
START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
URL = (
    "/api/statistics/{}?user_ids={}&start_date=2026-03-01T00:00:00Z&end_date=2026-03-04T00:00:00Z&group_by={}"
)
REAL = "/api/statistics/power-consumed-real?user_id={}&start_date=2026-03-01T00:00:00Z&end_date=2026-03-04T00:00:00Z&group_by={}"
KINDS = (
    "energy-consumption",
    "energy-injection",
    "energy-cost",
    "co2-footprint",
    "voltage",
    "power-consumption",
)

Headers = Callable[..., dict[str, str]]


# --- the cache alone ----------------------------------------------------------------------------


def live_cache(max_bytes: int = 10_000) -> ResponseCache:
    cache = ResponseCache(max_bytes)
    cache.reset(live=True)
    return cache


def test_a_cache_not_live_neither_answers_nor_stores() -> None:
    cache = ResponseCache(10_000)
    assert cache.token(["a"]) is None
    assert not cache.put("k", ["a"], (0, 0), b"body")
    assert cache.get("k") is None
    cache.reset(live=True)
    assert cache.put("k", ["a"], cache.token(["a"]), b"body")
    cache.reset(live=False)
    assert cache.get("k") is None and len(cache) == 0


def test_invalidation_drops_only_that_households_bodies() -> None:
    cache = live_cache()
    cache.put("a1", ["a"], cache.token(["a"]), b"A1")
    cache.put("ab", ["a", "b"], cache.token(["a", "b"]), b"AB")
    cache.put("b1", ["b"], cache.token(["b"]), b"B1")
    cache.invalidate(["a"])
    assert cache.get("a1") is None and cache.get("ab") is None
    assert cache.get("b1") == b"B1"
    assert cache.size_bytes == len(b"B1") + 256 + 64


def test_a_body_read_before_a_change_is_not_stored_after_it() -> None:
    cache = live_cache()
    token = cache.token(["a", "b"])
    cache.invalidate(["b"])  # announced while the body was being read
    assert not cache.put("ab", ["a", "b"], token, b"stale")
    assert cache.get("ab") is None
    token = cache.token(["a"])
    cache.reset(live=True)  # reconnected: anything announced meanwhile was missed
    assert not cache.put("a", ["a"], token, b"stale")
    assert cache.put("a", ["a"], cache.token(["a"]), b"fresh")


def test_while_suspended_the_cache_answers_a_moment_and_stores_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A probe after a quiet spell suspends the cache: it goes on answering briefly (the round trip
    takes milliseconds when announcements arrive), but a probe that hangs must not keep it answering."""
    cache = live_cache()
    assert cache.put("a", ["a"], cache.token(["a"]), b"A")
    cache.suspend(True)
    assert cache.live and cache.get("a") == b"A"
    assert cache.token(["b"]) is None and not cache.put("b", ["b"], (0, 0), b"B")
    monkeypatch.setattr(cache_module, "SUSPENDED_ANSWERS_S", 0.0)
    assert not cache.live and cache.get("a") is None
    cache.suspend(False)
    assert cache.get("a") == b"A"  # nothing was announced meanwhile: the entry is still good
    assert cache.put("b", ["b"], cache.token(["b"]), b"B")


def test_least_recently_used_bodies_go_first_when_full() -> None:
    cache = live_cache(max_bytes=3 * (100 + 256 + 64))
    for key in "abc":
        assert cache.put(key, [key], cache.token([key]), bytes(100))
    assert cache.get("a") is not None  # "b" is now the least recently used
    assert cache.put("d", ["d"], cache.token(["d"]), bytes(100))
    assert cache.get("b") is None
    assert {key for key in "acd" if cache.get(key) is not None} == {"a", "c", "d"}
    assert cache.size_bytes <= cache.max_bytes
    assert not cache.put("huge", ["e"], cache.token(["e"]), bytes(4000))  # larger than the whole cache


def test_quarter_hour_keys_hold_every_time_zone_since_the_earliest_reading() -> None:
    """The key merges ends within a quarter hour: it needs every offset to be whole quarter hours."""
    import zoneinfo

    days = pd.date_range(EARLIEST_READING.replace(tzinfo=None), "2040-01-01", freq="6h", tz="UTC")
    odd = []
    for zone in sorted(zoneinfo.available_timezones()):
        local = days.tz_convert(zone).tz_localize(None)
        offsets = (local - days.tz_localize(None)).total_seconds().astype("int64")
        if (offsets % 900 != 0).any():
            odd.append(zone)
    assert odd == []


# --- against PostgreSQL -------------------------------------------------------------------------


@pytest.fixture
def cached(context: ServiceContext) -> Iterator[ServiceContext]:
    """A second context on the test database with the cache on, listening."""
    yield from _cached_context(context)


@pytest.fixture
def cached_without_quiet_probes(context: ServiceContext) -> Iterator[ServiceContext]:
    """`cached`, whose listener does not probe the path after quiet periods: a probe keeps the
    cache from storing for its round trip, so on a loaded machine the hits of a long series of
    requests would depend on when the quiet period ends."""
    yield from _cached_context(context, idle_check_s=3600.0)


def _cached_context(context: ServiceContext, idle_check_s: float | None = None) -> Iterator[ServiceContext]:
    if context.engine.dialect.name != "postgresql":
        pytest.skip("the response cache needs PostgreSQL's notifications")
    cached_context = build_context(
        make_settings(context.settings.database_url, response_cache_mb=8, run_migrations_on_start=False)
    )
    if idle_check_s is not None:
        assert cached_context.change_listener is not None
        cached_context.change_listener.idle_check_s = idle_check_s  # before it starts
    cache = cached_context.series_cache()
    assert cache is not None
    wait_for(lambda: cache.live, "the listener to connect")
    yield cached_context
    cached_context.dispose()


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def day_of_readings(day: int, base_wh: float, step_wh: float) -> list[dict[str, Any]]:
    first = START + dt.timedelta(days=day)
    return [
        reading(
            first + dt.timedelta(minutes=15 * i),
            base_wh + step_wh * i,
            10.0 * i,
            power_w=400.0,
            voltage_v=230.0,
        )
        for i in range(97)
    ]


def hits() -> float:
    return metrics.RESPONSE_CACHE_REQUESTS.labels("hit")._value.get()


def test_cached_answers_equal_fresh_ones_until_and_after_a_change(
    cached_without_quiet_probes: ServiceContext, context: ServiceContext, auth_headers: Headers
) -> None:
    cached = cached_without_quiet_probes
    assert process(cached, [account_message(USER), account_message(OTHER)]) == []
    assert process(cached, [meter_message(USER, day_of_readings(0, 0.0, 100.0))]) == []
    assert process(cached, [meter_message(OTHER, day_of_readings(0, 0.0, 50.0))]) == []
    fresh_app = create_app(context.settings, context=context, validate_responses=True)
    cached_app = create_app(cached.settings, context=cached, validate_responses=True)
    cache = cached.response_cache
    assert cache is not None
    headers = auth_headers(service=True)
    urls = [
        URL.format(kind, user, group)
        for kind in KINDS
        for user in (USER, OTHER)
        for group in ("hourly", "daily")
    ]
    urls += [
        URL.format("energy-consumption", f"{USER}&user_ids={OTHER}", "15_mins") + "&include_quality=true"
    ]
    urls += [REAL.format(user, group) for user in (USER, OTHER) for group in ("hourly", "daily")]
    urls += [f"/api/statistics/statistics-summary?user_id={user}&date=2026-03-02" for user in (USER, OTHER)]
    with fresh_app.test_client() as fresh, cached_app.test_client() as client:

        def check_all() -> None:
            for url in urls:
                expected = fresh.get(url, headers=headers)
                assert expected.status_code == 200
                first, second = client.get(url, headers=headers), client.get(url, headers=headers)
                assert first.content == expected.content and second.content == expected.content, url

        before_hits = hits()
        check_all()
        assert hits() - before_hits == len(urls)  # every second answer came from the cache
        assert len(cache) == len(urls)

        # A late day for USER: its answers are dropped once the commit is announced, OTHER's stay.
        assert process(cached, [meter_message(USER, day_of_readings(1, 9600.0, 80.0))]) == []
        wait_for(lambda: len(cache) == sum(USER not in url for url in urls), "USER's answers to go")
        check_all()

        # A forecast for OTHER changes only its forecast-vs-real answers.
        forecast = {
            "user_id": OTHER,
            "forecast_day": "2026-03-01",
            "interval_minutes": 60,
            "values": [
                {"timestamp": f"2026-03-01T{hour:02d}:00:00Z", "energy_kwh": 0.5} for hour in range(24)
            ],
        }
        cached_before = len(cache)
        assert (
            process(cached, [message("statistics", envelope("ForecastComputedEvent", forecast), OTHER)]) == []
        )
        wait_for(lambda: len(cache) < cached_before, "OTHER's answers to go")
        check_all()
        answer = client.get(REAL.format(OTHER, "daily"), headers=headers).json()
        assert answer[0]["forecast"][0]["energy"] == pytest.approx(12.0)

        # Erasure: the household is gone from every answer at once.
        assert process(cached, [account_message(USER, "UserHardDeleted")]) == []
        wait_for(lambda: all(USER not in str(key) for key in cache._entries), "the erased answers to go")
        assert client.get(URL.format("energy-consumption", USER, "daily"), headers=headers).status_code == 404


def test_bills_and_tariff_comparisons_are_cached_until_what_they_price_changes(
    cached_without_quiet_probes: ServiceContext, context: ServiceContext, auth_headers: Headers
) -> None:
    """Bills and tariff comparisons depend on their household's data and contract, and on every
    zone's energy prices (a dynamic tariff or option), which change no stored statistic of a
    household on a fixed tariff."""
    cached = cached_without_quiet_probes
    assert process(cached, [account_message(USER), account_message(OTHER)]) == []
    for day in range(3):
        assert process(cached, [meter_message(USER, day_of_readings(day, 9600.0 * day, 100.0))]) == []
        assert process(cached, [meter_message(OTHER, day_of_readings(day, 4800.0 * day, 50.0))]) == []
    cache = cached.response_cache
    assert cache is not None
    bill = "/api/statistics/bill?user_id={}&period=2026-03"
    comparison = (
        "/api/statistics/tariff-comparison?user_id={}"
        "&start_date=2026-03-01T00:00:00Z&end_date=2026-03-04T00:00:00Z"
    )
    urls = [template.format(user) for template in (bill, comparison) for user in (USER, OTHER)]
    headers = auth_headers(service=True)
    fresh_app = create_app(context.settings, context=context, validate_responses=True)
    cached_app = create_app(cached.settings, context=cached, validate_responses=True)
    with fresh_app.test_client() as fresh, cached_app.test_client() as client:

        def check_all() -> None:
            for url in urls:
                expected = fresh.get(url, headers=headers)
                assert expected.status_code == 200, expected.json()
                first, second = client.get(url, headers=headers), client.get(url, headers=headers)
                assert first.content == expected.content and second.content == expected.content, url

        before_hits = hits()
        check_all()
        assert hits() - before_hits == len(urls)
        assert len(cache) == len(urls)

        # A late reading of USER's: both of its answers go, OTHER's stay.
        assert (
            process(cached, [meter_message(USER, [reading(START + dt.timedelta(hours=30), 12_500.0)])]) == []
        )
        wait_for(lambda: len(cache) == 2, "USER's answers to go")
        assert {key[0] for key in cache._entries} == {"bill", "tariff-comparison"}
        check_all()

        # Prices of the zone: every answer priced at request time goes; comparisons now have a
        # dynamic option. No stored statistic of these simple-tariff households changed.
        prices = {
            "zone": "PT",
            "direction": "import",
            "resolution_minutes": 60,
            "values": [{"timestamp": f"2026-03-02T{hour:02d}:00:00Z", "value": 0.1} for hour in range(24)],
        }
        assert process(cached, [signal_message("EnergyPrices", prices)]) == []
        wait_for(lambda: len(cache) == 0, "the bills and comparisons to go")
        check_all()
        options = client.get(comparison.format(USER), headers=headers).json()["options"]
        assert "dynamic" in {option["tariff_type"] for option in options}

        # New billing terms in the contract change no statistic, but they change the bill.
        updated = account_message(
            OTHER, "UserUpdated", large_family=True, effective_from="2020-01-01T00:00:00Z"
        )
        assert process(cached, [updated]) == []
        wait_for(lambda: all(OTHER not in key for key in cache._entries), "OTHER's answers to go")
        check_all()
        assert client.get(bill.format(OTHER), headers=headers).json()["large_family_source"] == "contract"


def test_the_cache_stops_answering_while_the_listener_is_disconnected(
    cached: ServiceContext, auth_headers: Headers
) -> None:
    assert process(cached, [account_message(USER), meter_message(USER, day_of_readings(0, 0.0, 100.0))]) == []
    cache = cached.response_cache
    assert cache is not None
    url = URL.format("energy-consumption", USER, "daily")
    headers = auth_headers(user_id=USER)
    with create_app(cached.settings, context=cached).test_client() as client:
        body = client.get(url, headers=headers).content
        assert len(cache) == 1
        assert terminate_backends(cached.engine, "query LIKE 'LISTEN%'") == 1
        wait_for(lambda: not cache.live, "the listener to notice")
        assert len(cache) == 0
        assert client.get(url, headers=headers).content == body  # answered from the database
        wait_for(lambda: cache.live, "the listener to reconnect")
        assert client.get(url, headers=headers).content == body
        assert len(cache) == 1


def test_the_triggers_announce_each_changed_household_once_per_transaction(context: ServiceContext) -> None:
    if context.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no notifications")
    url = make_url(context.settings.database_url)
    listener = psycopg2.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database, password=url.password
    )
    listener.autocommit = True
    with listener.cursor() as cursor:
        cursor.execute(f"LISTEN {CHANNEL}")

    def announced() -> list[str]:
        time.sleep(0.2)
        listener.poll()
        payloads = [notify.payload for notify in listener.notifies]
        listener.notifies.clear()
        return payloads

    try:
        assert process(context, [account_message(USER), account_message(OTHER)]) == []
        assert sorted(announced()) == sorted((USER, OTHER))
        # Many rows of both households in one batch: one announcement each.
        batch = [
            meter_message(USER, day_of_readings(0, 0.0, 100.0)),
            meter_message(OTHER, day_of_readings(0, 0.0, 5.0)),
        ]
        assert process(context, batch) == []
        assert sorted(announced()) == sorted((USER, OTHER))
        with context.engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM statistics_periods WHERE user_id = :u"), {"u": OTHER})
        assert announced() == [OTHER]
        with context.engine.begin() as connection:
            connection.execute(sa.text("TRUNCATE statistics_periods"))
        assert announced() == ["*"]
        with context.engine.connect() as connection:  # rolled back: nothing to announce
            connection.execute(sa.text("DELETE FROM households"))
            connection.rollback()
        assert announced() == []
    finally:
        listener.close()


# --- the listener against databases that do not (or no longer) announce -------------------------


@pytest.fixture
def scratch_database() -> Iterator[str]:
    """A database of its own: these tests migrate it step by step and disable its triggers."""
    url = create_postgres_database("sm_listen")
    yield url
    drop_postgres_database(url)


def test_the_cache_answers_only_while_every_change_is_announced(scratch_database: str) -> None:
    engine = make_engine(scratch_database)
    migrate.upgrade(engine, "0001")  # tables, but no announcing triggers yet
    cache = ResponseCache(1 << 20)
    listener = ChangeListener(engine, cache, idle_check_s=0.2)
    listener.start()
    try:
        time.sleep(1.5)
        assert not cache.live  # LISTEN works, but nothing would ever be announced
        migrate.upgrade(engine)
        wait_for(lambda: cache.live, "the cache to answer once the triggers exist")
        with engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE households DISABLE TRIGGER households_updated_announce"))
        wait_for(lambda: not cache.live, "the cache to stop answering without that trigger", timeout_s=5)
        with engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE households ENABLE TRIGGER households_updated_announce"))
        wait_for(lambda: cache.live, "the cache to answer again")
    finally:
        listener.stop()
        engine.dispose()


class FreezingProxy:
    """A TCP relay to PostgreSQL that can go silent without closing anything, like a hung middlebox."""

    def __init__(self) -> None:
        self.frozen = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.server.accept()
            upstream = socket.create_connection(("127.0.0.1", 5432))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._relay, args=(source, sink), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.02)
                sink.sendall(data)


def test_the_cache_pauses_when_announcements_stop_arriving(context: ServiceContext) -> None:
    if context.engine.dialect.name != "postgresql":
        pytest.skip("the response cache needs PostgreSQL's notifications")
    proxy = FreezingProxy()
    url = make_url(context.settings.database_url).set(host="127.0.0.1", port=proxy.port)
    engine = make_engine(url.render_as_string(hide_password=False))
    cache = ResponseCache(1 << 20)
    listener = ChangeListener(engine, cache, idle_check_s=0.3)
    listener.start()
    try:
        wait_for(lambda: cache.live, "the listener to connect")
        assert cache.put("k", [USER], cache.token([USER]), b"body")
        proxy.frozen.set()  # nothing gets through any more, nothing is closed either
        wait_for(lambda: not cache.live, "the cache to stop answering", timeout_s=3)
        assert cache.get("k") is None
        proxy.frozen.clear()
        wait_for(lambda: cache.live, "the cache to answer again")
        assert cache.get("k") == b"body"  # nothing was announced meanwhile: the entry is still good
    finally:
        proxy.frozen.clear()
        listener.stop()
        engine.dispose()
