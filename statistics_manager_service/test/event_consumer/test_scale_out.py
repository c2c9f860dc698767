"""Scale-out: several workers on one database must end where one worker would.

The race tests run two batch processors in threads on one PostgreSQL database and force the
dangerous interleavings: one transaction is held at a chosen statement while the other runs
until it either finishes or waits for a lock; the end state must equal a sequential run.
The process test runs two real worker processes in one consumer group.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event as sa_event

from statistics_manager_service.context import ServiceContext, build_context
from statistics_manager_service.event_consumer.processor import Message
from statistics_manager_service.event_consumer.runner import build_processor
from statistics_manager_service.test.conftest import POSTGRES_ADMIN_URL, clear_tables, make_settings
from statistics_manager_service.test.event_consumer.test_processor import assert_same_tables, snapshot
from statistics_manager_service.test.event_consumer.worker_support import (
    START,
    WorkerProcess,
    account_events,
    all_stored,
    deployment,
    expected_tables,
    household_ids,
    interleave,
    produce,
    reading_events,
    signal_events,
    wait_for,
    with_duplicates,
    workers,
)
from statistics_manager_service.test.support.kafka_broker import KafkaBroker
from statistics_manager_service.test.support.pipeline import (
    account_message,
    envelope,
    message,
    meter_message,
    reading,
    signal_message,
)

T0 = dt.datetime(2026, 5, 4, tzinfo=dt.UTC)


@pytest.fixture
def pg(postgres_url: str) -> Iterator[ServiceContext]:
    """The session's PostgreSQL database (row locks are what is under test), emptied."""
    context = build_context(make_settings(postgres_url))
    clear_tables(context.engine)
    yield context
    clear_tables(context.engine)
    context.engine.dispose()


def _readings(start: dt.datetime, count: int, first_wh: float, step_min: int = 15) -> list[dict[str, Any]]:
    return [reading(start + dt.timedelta(minutes=step_min * i), first_wh + 37.5 * i) for i in range(count)]


def _intensity(value: float, hours: int = 24) -> Message:
    values = [
        {"timestamp": (T0 + dt.timedelta(hours=h)).isoformat(), "value": value + h} for h in range(hours)
    ]
    return signal_message(
        "CarbonIntensity",
        {"zone": "PT", "kind": "actual", "unit": "gCO2eq/kWh", "resolution_minutes": 60, "values": values},
    )


# ---- forcing an interleaving ----------------------------------------------------------------


class Interleaving:
    """Hold the thread `held` right after a statement; run `other` until it ends or waits for a lock."""

    def __init__(self, engine: sa.Engine, hold_after: Callable[[str], bool]) -> None:
        self.engine = engine
        self.hold_after = hold_after
        self.reached = threading.Event()
        self.release = threading.Event()
        self.backend_pids: dict[str, int] = {}
        self.errors: list[BaseException] = []

    def _after_execute(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        name = threading.current_thread().name
        if name in ("held", "other"):
            self.backend_pids[name] = cursor.connection.get_backend_pid()
        if name == "held" and not self.reached.is_set() and self.hold_after(statement):
            self.reached.set()
            if not self.release.wait(60):
                raise TimeoutError("never released")

    def _waiting_for_lock(self, name: str) -> bool:
        pid = self.backend_pids.get(name)
        if pid is None:
            return False
        admin = sa.create_engine(POSTGRES_ADMIN_URL)
        try:
            with admin.connect() as connection:
                wait = connection.execute(
                    sa.text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                ).scalar()
        finally:
            admin.dispose()
        return wait == "Lock"

    def _thread(self, name: str, work: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                work()
            except BaseException as error:  # noqa: BLE001 - re-raised by run()
                self.errors.append(error)
                self.reached.set()

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        return thread

    def run(self, held: Callable[[], None], other: Callable[[], None]) -> str:
        """Return "waited" when `other` had to wait for `held`'s locks, else "finished first"."""
        sa_event.listen(self.engine, "after_cursor_execute", self._after_execute)
        try:
            first = self._thread("held", held)
            assert self.reached.wait(30), "the held transaction never reached its statement"
            assert not self.errors, self.errors
            second = self._thread("other", other)
            wait_for(
                lambda: not second.is_alive() or self._waiting_for_lock("other"),
                30,
                "the other transaction to finish or wait for a lock",
                interval_s=0.05,
            )
            outcome = "finished first" if not second.is_alive() else "waited"
            self.release.set()
            first.join(60)
            second.join(60)
            assert not first.is_alive() and not second.is_alive()
        finally:
            self.release.set()
            sa_event.remove(self.engine, "after_cursor_execute", self._after_execute)
        assert not self.errors, self.errors
        return outcome


def _apply(context: ServiceContext, messages: list[Message]) -> Callable[[], None]:
    processor = build_processor(context)  # one processor per worker

    def work() -> None:
        assert processor.process(messages) == []

    return work


def _run_sequentially(context: ServiceContext, *batches: list[Message]) -> dict[str, Any]:
    for batch in batches:
        _apply(context, batch)()
    return snapshot(context)


def _intensity_select(statement: str) -> bool:
    return statement.lstrip().startswith("SELECT") and "FROM carbon_intensity" in statement


def _zone_households_select(statement: str) -> bool:
    return statement.lstrip().startswith("SELECT") and "households.zone =" in statement


# ---- the races ------------------------------------------------------------------------------


@pytest.mark.parametrize("household", ["existing", "new"])
def test_readings_batch_holding_old_intensity_makes_the_signal_wait(
    pg: ServiceContext, household: str
) -> None:
    """A readings transaction has read the zone's intensity; an intensity update must not slip past it."""
    user = "racehome01" if household == "existing" else "racenew001"
    setup = [
        account_message("racehome01", tarif_type="bi-hourly", country="PT"),
        meter_message("racehome01", _readings(T0, 40, 1000.0)),
        _intensity(100.0),
    ]
    readings = [meter_message(user, _readings(T0 + dt.timedelta(hours=10), 40, 5000.0))]
    update = [_intensity(300.0)]

    expected = _run_sequentially(pg, setup, readings, update)
    clear_tables(pg.engine)
    _run_sequentially(pg, setup)
    outcome = Interleaving(pg.engine, _intensity_select).run(_apply(pg, readings), _apply(pg, update))
    assert outcome == "waited"
    assert_same_tables(snapshot(pg), expected)


def test_signal_that_listed_the_zone_makes_a_new_households_readings_wait(pg: ServiceContext) -> None:
    """An intensity update has listed the zone's households; a new household's readings must wait for it."""
    setup = [
        account_message("racehome01", tarif_type="simple", country="PT"),
        meter_message("racehome01", _readings(T0, 40, 1000.0)),
        _intensity(100.0),
    ]
    update = [_intensity(250.0)]
    readings = [meter_message("racenew002", _readings(T0 + dt.timedelta(hours=2), 40, 800.0))]

    expected = _run_sequentially(pg, setup, update, readings)
    clear_tables(pg.engine)
    _run_sequentially(pg, setup)
    outcome = Interleaving(pg.engine, _zone_households_select).run(_apply(pg, update), _apply(pg, readings))
    assert outcome == "waited"
    assert_same_tables(snapshot(pg), expected)


def test_a_household_read_earlier_in_the_batch_is_not_stale_when_locked(pg: ServiceContext) -> None:
    """A batch reads a household (a curve request), another worker then extends its readings;
    when the batch's own readings lock the household they must see that extension."""
    user = "racehome03"
    setup = [
        account_message(user, tarif_type="simple", country="PT"),
        meter_message(user, _readings(T0, 24, 1000.0)),  # up to 05:45
    ]
    curve = message(
        "statistics",
        envelope(
            "ComputeMockConsumptionCurveEvent",
            {"user_id": user, "start_date": "2026-05-04T00:00:00Z", "delivery_time": 60},
        ),
        user,
    )
    # this batch fills 06:00-07:45; the other worker meanwhile stores 09:00-14:45
    batch = [curve, meter_message(user, _readings(T0 + dt.timedelta(hours=6), 8, 1900.0))]
    later = [meter_message(user, _readings(T0 + dt.timedelta(hours=9), 24, 2300.0))]

    expected = _run_sequentially(pg, setup, later, batch)
    clear_tables(pg.engine)
    _run_sequentially(pg, setup)
    Interleaving(pg.engine, lambda s: s.startswith("INSERT INTO consumption_curves")).run(
        _apply(pg, batch), _apply(pg, later)
    )
    assert_same_tables(snapshot(pg), expected)


# ---- two worker processes -------------------------------------------------------------------


@pytest.mark.slow
def test_two_worker_processes_in_one_group_end_with_the_results_of_one(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    """Households are keys on four partitions; the workers split them, join mid-stream (a
    rebalance) and both see zone-wide signal changes race with their readings batches."""
    users = household_ids(24, "scale")
    streams = reading_events(users, readings_per_user=600, per_event=25, interval_s=120, seed=21)
    readings = with_duplicates(interleave(streams, seed=21), 0.1, seed=21)
    first_signals, second_signals = (signal_events(START, hours=24, seed=s) for s in (22, 23))
    third = len(readings) // 3
    part_one = account_events(users) + readings[:third]
    part_two = readings[third : 2 * third] + first_signals + readings[2 * third :] + second_signals
    events = part_one + part_two

    fast = {
        "KAFKA_SESSION_TIMEOUT_MS": "3000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "KAFKA_MAX_POLL_RECORDS": "40",
    }
    with deployment(kafka_broker, partitions=4) as d:
        first = WorkerProcess(d, tmp_path, "first", **fast)
        second = WorkerProcess(d, tmp_path, "second", **fast)
        with workers(first, second):
            first.start().wait_healthy()
            produce(kafka_broker, d.prefix, part_one)
            wait_for(lambda: d.readings() > 0, 60, "the first worker to get going")
            second.start().wait_healthy()  # joins while the first is busy
            produce(kafka_broker, d.prefix, part_two)
            wait_for(all_stored(d, events), 180, "every reading stored")
            wait_for(lambda: d.unsent_outbox() == 0, 60, "the outboxes to drain")
            shares = {w.name: w.metric("statistics_events_processed_total") for w in (first, second)}
            assert all(shares.values()), f"one worker did all the work: {shares}"
            assert first.alive and second.alive and first.starts == second.starts == 1
        assert d.dead_letters() == []
        assert_same_tables(d.snapshot(), expected_tables(events))
