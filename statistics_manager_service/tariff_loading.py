"""The tariff book in force, and the recomputation a corrected book calls for."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import sqlalchemy as sa

from statistics_manager_service.aggregation.granularity import BUCKET_SECONDS
from statistics_manager_service.aggregation.tariff_book import TariffBook, load_tariff_book
from statistics_manager_service.aggregation.tariffs import book_fingerprint, first_changed_date
from statistics_manager_service.recompute import StatisticsUpdater
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.tables import Household, ServiceState
from statistics_manager_service.storage.upsert import upsert_rows

if TYPE_CHECKING:
    from statistics_manager_service.context import ServiceContext

logger = logging.getLogger(__name__)

BOOK_TEXT_KEY = "tariff_book_text"
BOOK_FINGERPRINT_KEY = "tariff_book_fingerprint"
USERS_PER_TRANSACTION = 100
PACKAGED_BOOK = Path(__file__).with_name("aggregation") / "tariffs.yaml"


def book_text(tariffs_file: str | None) -> str:
    """Return the YAML text of the book in force (TARIFFS_FILE or the packaged one)."""
    return Path(tariffs_file or PACKAGED_BOOK).read_text(encoding="utf-8")


def updater_for(context: ServiceContext) -> StatisticsUpdater:
    """Return the context's statistics updater, loading the tariff book once."""
    if context.statistics is None:
        book = load_tariff_book(book_text(context.settings.tariffs_file))
        context.statistics = StatisticsUpdater(book, context.settings.default_timezone)
    return context.statistics


def _stored_book(context: ServiceContext) -> tuple[str | None, str | None]:
    with session_scope(context.session_factory) as session:
        rows = dict(
            session.execute(
                sa.select(ServiceState.key, ServiceState.value).where(
                    ServiceState.key.in_([BOOK_TEXT_KEY, BOOK_FINGERPRINT_KEY])
                )
            ).all()
        )
    return rows.get(BOOK_TEXT_KEY), rows.get(BOOK_FINGERPRINT_KEY)


def _store_book(context: ServiceContext, text: str, fingerprint: str) -> None:
    now = int(time.time())
    with session_scope(context.session_factory) as session:
        upsert_rows(
            session,
            ServiceState,
            [
                {"key": BOOK_TEXT_KEY, "value": text, "updated_at": now},
                {"key": BOOK_FINGERPRINT_KEY, "value": fingerprint, "updated_at": now},
            ],
            ["key"],
        )


def changed_since(previous_text: str | None, book: TariffBook) -> dt.date | None:
    """Return the first local date the new book prices differently (None: nothing to redo)."""
    if previous_text is None:
        return None
    try:
        previous = load_tariff_book(previous_text)
    except ValueError:
        return dt.date.min
    return first_changed_date(previous, book)


def apply_tariff_changes(context: ServiceContext, stop: threading.Event | None = None) -> int:
    """Recompute the history a corrected tariff book changes; return the households recomputed."""
    updater = updater_for(context)
    text = book_text(context.settings.tariffs_file)
    fingerprint = book_fingerprint(updater.book)
    previous_text, previous_fingerprint = _stored_book(context)
    if previous_fingerprint == fingerprint:
        return 0
    first_day = changed_since(previous_text, updater.book)
    recomputed = 0
    if first_day is not None:
        # A local date starts at most 14 hours before the same UTC date.
        start_s = (
            0
            if first_day == dt.date.min
            else int(dt.datetime.combine(first_day, dt.time(), dt.UTC).timestamp()) - 14 * 3600
        )
        logger.info("tariff book changed from %s: recomputing statistics", first_day)
        with session_scope(context.session_factory) as session:
            user_ids = list(session.scalars(sa.select(Household.user_id).order_by(Household.user_id)))
        for offset in range(0, len(user_ids), USERS_PER_TRANSACTION):
            if stop is not None and stop.is_set():
                return recomputed  # the fingerprint stays old: the next start finishes the work
            chunk = user_ids[offset : offset + USERS_PER_TRANSACTION]
            windows = pd.DataFrame(
                {"user_id": chunk, "start_s": start_s // BUCKET_SECONDS * BUCKET_SECONDS, "end_s": 2**62}
            )
            with session_scope(context.session_factory) as session:
                updater.recompute_windows(session, windows, cause="tariffs")
            recomputed += len(chunk)
    _store_book(context, text, fingerprint)
    return recomputed
