"""The peer-group job: the same groups whatever the batch size, however often it runs, whether
interrupted or run by two workers at once; the months it computes and the days it compares."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from typing import Any

import sqlalchemy as sa

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.event_consumer.peer_groups import PeerGroupJob, periods_due
from statistics_manager_service.recompute.peers import compared_days
from statistics_manager_service.storage.tables import PeerGroupRow
from statistics_manager_service.tariff_loading import updater_for
from statistics_manager_service.test.controllers.test_peer_comparison import NOW, PEERS, PV_HOME, _load


def _groups(context: ServiceContext) -> list[tuple[Any, ...]]:
    table = PeerGroupRow.__table__
    with context.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.select(table).order_by(*table.primary_key))]


def _job(context: ServiceContext, batch_households: int = 500) -> PeerGroupJob:
    return PeerGroupJob(context.session_factory, updater_for(context), 3600.0, batch_households)


class StopAfter(threading.Event):
    """A stop event that is set once it has been asked `checks` times: a worker stopped mid-round."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self.checks = checks

    def is_set(self) -> bool:
        self.checks -= 1
        return self.checks < 0 or super().is_set()


def test_batches_repetition_and_interruption_leave_the_same_groups(context: ServiceContext) -> None:
    _load(context, [*PEERS, PV_HOME])
    whole = _groups(context)
    assert [(row[4], row[5]) for row in whole] == [(False, 10), (True, 1)]

    # Batches of three households (four batches) give the groups of one batch of all.
    runs = _job(context, batch_households=3).run_once(now=NOW)
    assert [(run.period, run.households_read, run.households_counted, run.written) for run in runs] == [
        ("2026-10", 11, 0, True),
        ("2026-11", 11, 11, True),
    ]
    assert _groups(context) == whole

    # A round stopped after its second batch writes nothing; the groups stay as they were.
    later = NOW + dt.timedelta(hours=1)
    stopped = _job(context, batch_households=3).run_once(now=later, stop=StopAfter(2))
    assert not any(run.written for run in stopped)
    assert _groups(context) == whole
    # The next round computes them afresh: the same groups, computed later.
    _job(context, batch_households=3).run_once(now=later)
    assert [row[:-1] for row in _groups(context)] == [row[:-1] for row in whole]
    assert {row[-1] for row in _groups(context)} == {int(later.timestamp())}

    # A worker skips a month another computed within the freshness window.
    fresh = _job(context).run_once(now=later + dt.timedelta(minutes=10), fresh_for_s=1800)
    assert [run.written for run in fresh] == [False, False]


def test_two_workers_at_once_store_one_set_of_groups(context: ServiceContext) -> None:
    _load(context, PEERS)
    expected = _groups(context)
    later = NOW + dt.timedelta(hours=2)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            _job(context, batch_households=4).run_once(now=later)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    assert [row[:-1] for row in _groups(context)] == [row[:-1] for row in expected]


def test_a_group_that_loses_its_households_is_removed(context: ServiceContext) -> None:
    _load(context, [*PEERS, PV_HOME])
    assert len(_groups(context)) == 2
    with context.engine.begin() as connection:
        connection.execute(
            sa.text("DELETE FROM statistics_periods WHERE user_id = :u"), {"u": PV_HOME.user_id}
        )
    _job(context).run_once(now=NOW)
    assert [(row[4], row[5]) for row in _groups(context)] == [(False, 10)]


def test_the_months_and_days_a_round_compares() -> None:
    assert periods_due(dt.date(2026, 1, 15)) == ["2025-12", "2026-01"]
    assert periods_due(dt.date(2026, 3, 1)) == ["2026-02", "2026-03"]
    february = compared_days("2026-02", dt.date(2026, 3, 1))
    assert february is not None
    assert (february.first_day, february.last_day, february.complete) == (
        dt.date(2026, 2, 1),
        dt.date(2026, 2, 28),
        True,
    )
    to_date = compared_days("2026-03", dt.date(2026, 3, 10))
    assert to_date == dataclasses.replace(
        february,
        period="2026-03",
        first_day=dt.date(2026, 3, 1),
        last_day=dt.date(2026, 3, 9),
        complete=False,
    )
    # The open month's first day has no day before it to compare; a future month none at all.
    assert compared_days("2026-03", dt.date(2026, 3, 1)) is None
    assert compared_days("2026-04", dt.date(2026, 3, 10)) is None


def test_a_round_never_overwrites_the_groups_of_a_round_that_began_later(context: ServiceContext) -> None:
    """Worker A begins before midnight and is slow; worker B begins after it and writes first: A's
    older groups must not replace B's."""
    _load(context, [*PEERS, PV_HOME])
    later = NOW + dt.timedelta(hours=2)
    assert all(run.written for run in _job(context).run_once(now=later))
    newest = _groups(context)
    slow = _job(context).run_once(now=NOW + dt.timedelta(hours=1))
    assert not any(run.written for run in slow)
    assert _groups(context) == newest
