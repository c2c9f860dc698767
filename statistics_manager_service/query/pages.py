"""Which households a forecast-vs-real page covers."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from statistics_manager_service.auth import Principal
from statistics_manager_service.storage.tables import Household


def household_page(
    session: Session, principal: Principal, user_ids: list[str] | None, page: int, page_size: int
) -> tuple[list[str], int]:
    """Return the user ids of the page and the total count.

    Without user_ids a service (or anonymous internal caller) pages through every household and a
    household user gets its own.
    """
    if user_ids:
        ids = list(dict.fromkeys(user_ids))
        return ids[(page - 1) * page_size : page * page_size], len(ids)
    if not principal.reads_everything:
        return ([principal.user_id] if principal.user_id and page == 1 else []), 1
    total = int(session.execute(sa.select(sa.func.count()).select_from(Household)).scalar_one())
    ids = list(
        session.scalars(
            sa.select(Household.user_id)
            .order_by(Household.user_id)
            .offset((page - 1) * page_size)
            .limit(page_size)
        )
    )
    return ids, total
