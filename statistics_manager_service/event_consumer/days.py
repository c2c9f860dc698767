"""DailyStatisticsClosed: announce each household's local day once its readings pass midnight."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from statistics_manager_service.event_producers.outbox import NewEvent, add_events
from statistics_manager_service.storage.households import update_households
from statistics_manager_service.storage.tables import Household

# A household catching up on a long backlog announces its most recent days only.
MAX_DAYS_ANNOUNCED = 31


def _day_start(epoch_s: int, zone: ZoneInfo) -> dt.datetime:
    local = dt.datetime.fromtimestamp(epoch_s, zone)
    return dt.datetime.combine(local.date(), dt.time(), zone)


def announce_closed_days(session: Session, user_ids: Sequence[str], default_timezone: str) -> None:
    """Queue a DailyStatisticsClosed for every local day that the newest reading has completed."""
    if not user_ids:
        return
    households = session.scalars(sa.select(Household).where(Household.user_id.in_(sorted(set(user_ids)))))
    closed: list[tuple[str, int]] = []
    events: list[NewEvent] = []
    for household in households:
        if household.last_reading_ts is None:
            continue
        zone = ZoneInfo(household.timezone or default_timezone)
        today_start = _day_start(household.last_reading_ts, zone)
        today_start_s = int(today_start.timestamp())
        previous = household.closed_through
        if previous == today_start_s:
            continue
        closed.append((household.user_id, today_start_s))
        # As stored below: the session has nothing left to flush for it.
        set_committed_value(household, "closed_through", today_start_s)
        if previous is None:
            continue  # history that arrives before live data is not announced day by day
        day = dt.datetime.fromtimestamp(previous, zone).date()
        days = []
        while day < today_start.date():
            days.append(day)
            day += dt.timedelta(days=1)
        for day in days[-MAX_DAYS_ANNOUNCED:]:
            start = dt.datetime.combine(day, dt.time(), zone)
            end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
            events.append(
                NewEvent(
                    "DailyStatisticsClosed",
                    household.user_id,
                    {
                        "user_id": household.user_id,
                        "date": day.isoformat(),
                        "timezone": zone.key,
                        "start": start.isoformat(),
                        "end": end.isoformat(),
                    },
                )
            )
    add_events(session, events)
    update_households(session, pd.DataFrame(closed, columns=["user_id", "closed_through"]))
