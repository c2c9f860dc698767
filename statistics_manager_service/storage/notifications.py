"""Listen to PostgreSQL's announcements of changed statistics and invalidate the response cache.

Migration 0002 makes every statement that changes `statistics_periods` or `households` notify
`statistics_changed` with each household id it touched (`'*'` for a truncation), delivered when
the transaction commits. This thread keeps one connection listening. Whenever it is not listening
(starting, connection lost, database down) announcements may be missed, so the cache is emptied and
stays out of use until listening resumes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from typing import Any

from sqlalchemy.engine import Engine

from statistics_manager_service import metrics
from statistics_manager_service.query.cache import ResponseCache

logger = logging.getLogger(__name__)

CHANNEL = "statistics_changed"
ALL_HOUSEHOLDS = "*"
# Without a notification for this long, check the connection is still alive (a half-open
# connection would otherwise hide missed announcements).
IDLE_CHECK_S = 10.0
RETRY_MIN_S = 0.5
RETRY_MAX_S = 15.0


class ChangeListener:
    """A daemon thread feeding a `ResponseCache` with the database's change announcements."""

    def __init__(self, engine: Engine, cache: ResponseCache, idle_check_s: float = IDLE_CHECK_S) -> None:
        self.engine = engine
        self.cache = cache
        self.idle_check_s = idle_check_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._connection: Any = None
        self._wake_read, self._wake_write = os.pipe()  # wakes the waiting thread on stop

    def start(self) -> None:
        """Start listening in the background (once; later calls do nothing)."""
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="change-listener", daemon=True)
                self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop listening and take the cache out of use."""
        with self._lock:
            if self._stop.is_set():
                return
            self._stop.set()
            thread = self._thread
        os.write(self._wake_write, b"x")
        if thread is not None:
            thread.join(timeout_s)
        os.close(self._wake_read)
        os.close(self._wake_write)
        self.cache.reset(live=False)

    def _run(self) -> None:
        delay = RETRY_MIN_S
        while not self._stop.is_set():
            try:
                self._listen()
                delay = RETRY_MIN_S
            except Exception as error:  # noqa: BLE001 - any failure means announcements may be lost
                self.cache.reset(live=False)
                metrics.RESPONSE_CACHE_LIVE.set(0)
                logger.warning("change listener lost its connection (%s); retrying in %.1f s", error, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            finally:
                self._close()
        metrics.RESPONSE_CACHE_LIVE.set(0)

    def _listen(self) -> None:
        # A connection of its own, outside the pool (and its gauges): it is held for good.
        args, kwargs = self.engine.dialect.create_connect_args(self.engine.url)
        connection: Any = self.engine.dialect.loaded_dbapi.connect(*args, **{"connect_timeout": 5, **kwargs})
        self._connection = connection
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {CHANNEL}")
        # Announcements from before LISTEN are lost: start from an empty cache.
        self.cache.reset(live=True)
        metrics.RESPONSE_CACHE_LIVE.set(1)
        logger.info("listening to statistics changes; response cache in use")
        while not self._stop.is_set():
            readable, _, _ = select.select([connection, self._wake_read], [], [], self.idle_check_s)
            if self._wake_read in readable:
                return
            if readable:
                connection.poll()
            else:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
            self._apply(connection.notifies)

    def _apply(self, notifies: list[Any]) -> None:
        if not notifies:
            return
        user_ids = {notify.payload for notify in notifies}
        notifies.clear()
        if ALL_HOUSEHOLDS in user_ids:
            self.cache.reset(live=True)
        else:
            self.cache.invalidate(user_ids)

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too
                connection.close()
