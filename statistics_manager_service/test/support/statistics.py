"""Read households' statistics at any granularity, as the API would: stored days from their table,
the other levels computed from the stored readings or days."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from statistics_manager_service.aggregation.granularity import LEVEL
from statistics_manager_service.context import ServiceContext
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.tables import Household, ReadingDay, StatisticsPeriod
from statistics_manager_service.tariff_loading import updater_for


def statistics_rows(context: ServiceContext, granularity: str, columns: list[str]) -> pd.DataFrame:
    """Every household's periods at `granularity`: user_id, period_start and `columns`."""
    with session_scope(context.session_factory) as session:
        if not LEVEL[granularity].stored:
            users = list(session.scalars(sa.select(Household.user_id).order_by(Household.user_id)))
            frame = updater_for(context).period_statistics(
                session, users, 0, 2**62, LEVEL[granularity], with_update_times=True
            )
            return frame[["user_id", "period_start", *columns]].reset_index(drop=True)
        table = StatisticsPeriod.__table__
        statement = (
            sa.select(table.c.user_id, table.c.period_start, *(table.c[name] for name in columns))
            .where(table.c.granularity == granularity)
            .order_by(table.c.user_id, table.c.period_start)
        )
        return pd.DataFrame(session.execute(statement).all(), columns=["user_id", "period_start", *columns])


def stored_reading_count(context: ServiceContext, **where: object) -> int:
    """Count the stored readings (of the day rows matching `where`)."""
    with context.engine.connect() as connection:
        statement = sa.select(sa.func.coalesce(sa.func.sum(ReadingDay.reading_count), 0))
        for name, value in where.items():
            statement = statement.where(getattr(ReadingDay, name) == value)
        return int(connection.execute(statement).scalar_one())
