"""The workers' periodic job that computes the peer groups of the open and the previous month.

Each round reads the households in batches of `BATCH_HOUSEHOLDS` (one short transaction each),
places each in its group, and replaces the month's groups in one transaction. It is a pure
function of the stored statistics: two workers running it at once write the same groups (one
after the other, under an advisory lock on PostgreSQL), a round interrupted before its write
leaves the groups as they were and the next round computes them afresh, and a round repeated on
unchanged data changes nothing but `computed_at`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from statistics_manager_service.aggregation.peers import MEMBER_COLUMNS, peer_groups
from statistics_manager_service.background import run_every
from statistics_manager_service.recompute.peers import (
    ComparedDays,
    compared_days,
    counted,
    household_peer_rows,
)
from statistics_manager_service.recompute.updater import StatisticsUpdater
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.peers import (
    household_batch,
    load_computed_period,
    lock_period,
    replace_period_groups,
)

logger = logging.getLogger(__name__)

# Households read per transaction: bounded reads however many households there are.
BATCH_HOUSEHOLDS = 500


@dataclasses.dataclass(frozen=True)
class PeriodRun:
    """What one computation of a month's groups did."""

    period: str
    households_read: int
    households_counted: int
    groups: int
    written: bool  # False: skipped (computed recently by another worker) or interrupted


def periods_due(today: dt.date) -> list[str]:
    """Return the months a round computes: the previous one (late data may still change it) and
    the open one."""
    previous = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    return [f"{previous:%Y-%m}", f"{today:%Y-%m}"]


class PeerGroupJob:
    """Compute and store the peer groups of the open and the previous month."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        statistics: StatisticsUpdater,
        interval_s: float,
        batch_households: int = BATCH_HOUSEHOLDS,
    ) -> None:
        self.session_factory = session_factory
        self.statistics = statistics
        self.interval_s = interval_s
        self.batch_households = batch_households

    def run_once(
        self, now: dt.datetime | None = None, stop: threading.Event | None = None, fresh_for_s: float = 0.0
    ) -> list[PeriodRun]:
        """Compute the months due at `now`; skip a month computed less than `fresh_for_s` ago."""
        now = now or dt.datetime.now(dt.UTC)
        today = now.astimezone(ZoneInfo(self.statistics.default_timezone)).date()
        runs = []
        for period in periods_due(today):
            days = compared_days(period, today)
            if days is not None:
                runs.append(self.compute_period(days, int(now.timestamp()), stop, fresh_for_s))
        return runs

    def compute_period(
        self, days: ComparedDays, now_s: int, stop: threading.Event | None = None, fresh_for_s: float = 0.0
    ) -> PeriodRun:
        """Compute one month's groups from every household and replace the stored ones."""
        if fresh_for_s > 0:
            with session_scope(self.session_factory) as session:
                computed = load_computed_period(session, days.period)
            if computed is not None and now_s - computed.computed_at < fresh_for_s:
                return PeriodRun(days.period, 0, 0, 0, written=False)
        frames, read, after = [], 0, ""
        while True:
            if stop is not None and stop.is_set():
                return PeriodRun(days.period, read, 0, 0, written=False)
            with session_scope(self.session_factory) as session:
                batch = household_batch(session, after, self.batch_households)
                if not batch:
                    break
                frames.append(counted(household_peer_rows(session, self.statistics, batch, days)))
            read += len(batch)
            after = batch[-1].user_id
        members = (
            pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(MEMBER_COLUMNS))
        )
        groups = peer_groups(members[list(MEMBER_COLUMNS)])
        with session_scope(self.session_factory) as session:
            lock_period(session, days.period)
            stored = load_computed_period(session, days.period)
            if stored is not None and stored.computed_at > now_s:
                # A round that began later (another worker's) wrote while this one was reading.
                return PeriodRun(days.period, read, len(members), len(groups), written=False)
            replace_period_groups(
                session,
                days.period,
                groups,
                days.first_day.isoformat(),
                days.last_day.isoformat(),
                days.complete,
                now_s,
            )
        logger.info(
            "peer groups of %s (days %s to %s): %d of %d households in %d groups",
            days.period,
            days.first_day,
            days.last_day,
            len(members),
            read,
            len(groups),
        )
        return PeriodRun(days.period, read, len(members), len(groups), written=True)

    def run(self, stop: threading.Event) -> None:
        """Compute the due months now and every `interval_s` until stopped; a month another worker
        computed in the last half interval is left to it; a database outage waits for the next round."""
        run_every(
            stop,
            self.interval_s,
            "peer groups",
            lambda: self.run_once(stop=stop, fresh_for_s=self.interval_s / 2),
        )
