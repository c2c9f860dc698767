"""Housekeeping of the worker: forget old processed event ids, old alert records (and old outbox
rows for Debezium)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from statistics_manager_service import metrics
from statistics_manager_service.background import run_every
from statistics_manager_service.config import Settings
from statistics_manager_service.event_producers.outbox import delete_created_before
from statistics_manager_service.storage.alerts import prune_alerts_sent
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.households import prune_processed_events

logger = logging.getLogger(__name__)

# Rows deleted per transaction: short locks and a bounded undo/WAL burst, however much is due.
PRUNE_BATCH_ROWS = 5_000
INTERVAL_S = 3600.0
# The alert job looks back a week at most and keys a bill alert by its period's first day: an
# alert recorded this long ago can never be found again, and its record only takes room.
ALERTS_SENT_RETENTION_DAYS = 400

Prune = Callable[[Session, int, int], int]


class Housekeeping:
    """Delete rows past their retention, in bounded batches, once at start and then every hour."""

    def __init__(
        self, session_factory: sessionmaker[Session], settings: Settings, batch_rows: int = PRUNE_BATCH_ROWS
    ) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.batch_rows = batch_rows

    def prune_once(self, stop: threading.Event | None = None, now_s: float | None = None) -> dict[str, int]:
        """Prune every table that is due; return the rows deleted per table."""
        now_s = time.time() if now_s is None else now_s
        retention_s = self.settings.processed_events_retention_days * 86400
        pruned = {
            "processed_events": self._drain(
                "processed_events", prune_processed_events, int(now_s - retention_s), stop
            ),
            "alerts_sent": self._drain(
                "alerts_sent", prune_alerts_sent, int(now_s - ALERTS_SENT_RETENTION_DAYS * 86400), stop
            ),
        }
        if self.settings.debezium_outbox:
            # Debezium has read each insert from the WAL at commit; the row itself is never read again.
            cutoff_ms = int((now_s - self.settings.outbox_retention_hours * 3600) * 1000)
            pruned["events"] = self._drain("events", delete_created_before, cutoff_ms, stop)
        return pruned

    def _drain(self, table: str, prune: Prune, cutoff: int, stop: threading.Event | None) -> int:
        total = 0
        while stop is None or not stop.is_set():
            with session_scope(self.session_factory) as session:
                deleted = prune(session, cutoff, self.batch_rows)
            metrics.ROWS_PRUNED.labels(table).inc(deleted)
            total += deleted
            if deleted < self.batch_rows:
                break
        if total:
            logger.info("pruned %d rows of %s", total, table)
        return total

    def run(self, stop: threading.Event) -> None:
        """Prune now and every hour until stopped; a database outage waits for the next round."""
        run_every(stop, INTERVAL_S, "housekeeping", lambda: self.prune_once(stop))
