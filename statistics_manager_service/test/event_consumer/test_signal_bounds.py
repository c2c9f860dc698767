"""A grid signal may not make one transaction recompute a whole zone over its whole history:
values far from now are dead-lettered, only the intervals the values cover are recomputed, and a
zone is recomputed a bounded chunk of households per transaction, resumably."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time

import orjson
import pandas as pd
import sqlalchemy as sa

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.event_consumer.runner import build_processor, drain_pending_recomputes
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.tables import Household, OutboxEvent, PendingRecompute
from statistics_manager_service.tariff_loading import updater_for
from statistics_manager_service.test.support.pipeline import (
    account_message,
    iso,
    meter_message,
    process,
    reading,
    signal_message,
)
from statistics_manager_service.test.support.statistics import statistics_rows, stored_reading_count

HOUSEHOLDS = 50
CHUNK = 10
COMPARED = ["energy_imported_kwh", "co2_kg", "energy_cost_eur", "net_cost_eur", "reading_count"]


def _first_day() -> dt.datetime:
    now = dt.datetime.now(dt.UTC)
    return dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC) - dt.timedelta(days=3)


def _intensity(stamps: list[dt.datetime], value: float) -> dict[str, object]:
    return {
        "zone": "PT",
        "kind": "actual",
        "unit": "gCO2eq/kWh",
        "resolution_minutes": 60,
        "values": [{"timestamp": iso(stamp), "value": value} for stamp in stamps],
    }


def _updates(context: ServiceContext) -> list[dict[str, object]]:
    """The StatisticsUpdated events queued so far, oldest first."""
    with context.engine.connect() as connection:
        rows = connection.execute(
            sa.select(OutboxEvent.payload)
            .where(OutboxEvent.type == "StatisticsUpdated")
            .order_by(OutboxEvent.seq)
        ).all()
    return [orjson.loads(payload) for (payload,) in rows]


def _pending(context: ServiceContext) -> int:
    with context.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(PendingRecompute)).scalar_one())


def _zone_with_history(context: ServiceContext, count: int) -> list[str]:
    users = [f"zonehome{i:02d}" for i in range(count)]
    start = _first_day()
    assert process(context, [account_message(u, country="PT") for u in users]) == []
    day = [
        [reading(start + dt.timedelta(minutes=15 * i), 30.0 * i + n) for i in range(192)]
        for n in range(count)
    ]
    assert process(context, [meter_message(u, day[n]) for n, u in enumerate(users)]) == []
    return users


def test_signal_values_far_from_now_are_dead_lettered(context: ServiceContext) -> None:
    _zone_with_history(context, 1)
    long_ago = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    far_ahead = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
    old, ahead = (
        signal_message("CarbonIntensity", _intensity([long_ago, _first_day()], 100.0)),
        signal_message("CarbonIntensity", _intensity([_first_day(), far_ahead], 100.0)),
    )
    before = len(_updates(context))
    dead = process(context, [old, ahead])
    assert [(d.message.offset, d.error_class) for d in dead] == [
        (old.offset, "PoisonMessage"),
        (ahead.offset, "PoisonMessage"),
    ]
    assert "1970-01-01T00:00:00+00:00 is older than SIGNAL_MAX_AGE_DAYS (3650 days)" in dead[0].reason
    assert "9999-01-01T00:00:00+00:00 is more than SIGNAL_MAX_FUTURE_DAYS (31 days) ahead" in dead[1].reason
    assert len(_updates(context)) == before


def test_only_the_intervals_a_signal_covers_are_recomputed(context: ServiceContext) -> None:
    (user,) = _zone_with_history(context, 1)
    first, last = _first_day(), _first_day() + dt.timedelta(hours=47)
    before = len(_updates(context))
    assert process(context, [signal_message("CarbonIntensity", _intensity([first, last], 150.0))]) == []
    while build_processor(context).recompute_pending():
        pass
    windows = sorted((u["start"], u["end"]) for u in _updates(context)[before:] if u["user_id"] == user)
    # Two values two days apart: their two hours, not the two days between them.
    assert windows == [
        (iso(first), iso(first + dt.timedelta(hours=1))),
        (iso(last), iso(last + dt.timedelta(hours=1))),
    ]


def test_a_zone_is_recomputed_in_bounded_resumable_chunks_while_readings_flow(
    context: ServiceContext,
) -> None:
    context.settings = dataclasses.replace(context.settings, recompute_households_per_transaction=CHUNK)
    users = _zone_with_history(context, HOUSEHOLDS)
    hours = [_first_day() + dt.timedelta(hours=h) for h in range(48)]
    before = len(_updates(context))
    assert process(context, [signal_message("CarbonIntensity", _intensity(hours, 200.0))]) == []
    per_transaction = [len(_updates(context)) - before]
    assert _pending(context) == 1
    processor = build_processor(context)
    late_user = users[-1]
    late = [reading(_first_day() + dt.timedelta(days=2, minutes=15 * i), 9000.0 + 30 * i) for i in range(4)]
    while True:
        # A reading batch of the zone goes through between chunks, not behind the whole zone.
        if late:
            assert process(context, [meter_message(late_user, late)]) == []
            assert stored_reading_count(context, user_id=late_user) == 196
            assert _pending(context) == 1
            late = []
        counted = len(_updates(context))
        if not processor.recompute_pending():
            break
        per_transaction.append(len(_updates(context)) - counted)
    assert per_transaction == [CHUNK] * (HOUSEHOLDS // CHUNK)
    assert _pending(context) == 0
    stored = statistics_rows(context, "daily", COMPARED)
    with session_scope(context.session_factory) as session:
        everyone = list(session.scalars(sa.select(Household.user_id)))
        updater_for(context).rebuild(session, everyone, cause="test")
    rebuilt = statistics_rows(context, "daily", COMPARED)
    pd.testing.assert_frame_equal(stored, rebuilt)
    assert (stored["co2_kg"] > 0).all()


def test_without_a_broker_the_recorded_chunks_are_drained_in_the_background(context: ServiceContext) -> None:
    # The embedded default has no consumer to do a chunk between batches: a thread does.
    context.settings = dataclasses.replace(context.settings, recompute_households_per_transaction=2)
    assert not context.settings.kafka_enabled
    users = _zone_with_history(context, 7)
    hours = [_first_day() + dt.timedelta(hours=h) for h in range(24)]
    assert process(context, [signal_message("CarbonIntensity", _intensity(hours, 150.0))]) == []
    assert _pending(context) == 1
    stop = threading.Event()
    drainer = threading.Thread(target=drain_pending_recomputes, args=(build_processor(context), stop, 0.05))
    drainer.start()
    try:
        deadline = time.monotonic() + 60
        while _pending(context) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        drainer.join(timeout=30)
    assert _pending(context) == 0
    stored = statistics_rows(context, "daily", COMPARED)
    with session_scope(context.session_factory) as session:
        updater_for(context).rebuild(session, users, cause="test")
    pd.testing.assert_frame_equal(stored, statistics_rows(context, "daily", COMPARED))
