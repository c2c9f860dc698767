"""Listen to PostgreSQL's announcements of changed statistics and invalidate the response cache.

Migrations 0002 and 0003 make every statement that changes `statistics_periods`, `households`,
`consumption_curves` or `reading_days` notify `statistics_changed` with each household id it
touched (`'*'` for a truncation), delivered when the transaction commits; migration 0012 makes
`contract_versions` announce its households too, and every change of `energy_prices` notify
`PRICES_CHANGED`, which the cache treats as one more id that answers may depend on. This thread
keeps one connection listening. Whenever it is not listening (starting, connection lost, database
down) announcements may be missed, so the cache is emptied and stays out of use until listening
resumes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import threading
import time
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from statistics_manager_service import metrics
from statistics_manager_service.query.cache import ResponseCache

logger = logging.getLogger(__name__)

CHANNEL = "statistics_changed"
ALL_HOUSEHOLDS = "*"
# Announced for any change of any zone's energy prices (longer than a user id: never one).
PRICES_CHANGED = "~prices-changed~"
# The tables whose changes migrations 0002, 0003 and 0012 announce, and their triggers on each.
ANNOUNCED_TABLES = (
    "statistics_periods",
    "households",
    "consumption_curves",
    "reading_days",
    "energy_prices",
    "contract_versions",
)
ANNOUNCING_TRIGGERS = frozenset(
    f"{table}_{event}_announce"
    for table in ANNOUNCED_TABLES
    for event in ("inserted", "updated", "deleted", "truncated")
)
# Without a notification for this long, prove that announcements still arrive (a connection
# gone half-open, a frozen proxy or a disabled trigger would hide changes): a probe announced
# through another connection must come back within PROBE_TIMEOUT_S, the cache paused meanwhile.
IDLE_CHECK_S = 5.0
PROBE_TIMEOUT_S = 5.0
PROBE_PREFIX = "~probe~"  # longer than a user id: never one
# A connection whose peer vanished fails within ~10 s instead of the kernel's ~15 minutes.
_KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}
_ANNOUNCING_SQL = (
    "SELECT NOT pg_is_in_recovery(), array_agg(tgname::text) FILTER (WHERE tgenabled IN ('O', 'A'))"
    " FROM pg_trigger WHERE tgname LIKE '%_announce' AND NOT tgisinternal"
)
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
                logger.warning("response cache out of use: %s; retrying in %.1f s", error, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            finally:
                self._close()
        metrics.RESPONSE_CACHE_LIVE.set(0)

    def _listen(self) -> None:
        # A connection of its own, outside the pool (and its gauges): it is held for good.
        args, kwargs = self.engine.dialect.create_connect_args(self.engine.url)
        options = {"connect_timeout": 5, **_KEEPALIVE, **kwargs}
        connection: Any = self.engine.dialect.loaded_dbapi.connect(*args, **options)
        self._connection = connection
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {CHANNEL}")
        with selectors.DefaultSelector() as selector:
            selector.register(connection, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            if not self._round_trip(connection, selector):
                return
            with self._lock:
                if self._stop.is_set():
                    return
                # Announcements from before LISTEN are lost: start from an empty cache.
                self.cache.reset(live=True)
            metrics.RESPONSE_CACHE_LIVE.set(1)
            logger.info("listening to statistics changes; response cache in use")
            while not self._stop.is_set():
                ready = {key.fileobj for key, _ in selector.select(self.idle_check_s)}
                if self._wake_read in ready:
                    return
                if ready:
                    connection.poll()
                    self._apply(connection.notifies)
                    continue
                # Quiet for a while: prove that announcements still arrive. Meanwhile the cache
                # stores nothing and answers only for a moment, in case the probe hangs.
                self.cache.suspend(True)
                if not self._round_trip(connection, selector):
                    return
                self.cache.suspend(False)

    def _round_trip(self, connection: Any, selector: selectors.BaseSelector) -> bool:
        """Announce a probe through another connection and wait for it here (False: stopping).

        It proves the whole path: the triggers are in place on a primary, and what is announced
        reaches this connection. Announcements arrive in commit order, so every change committed
        before the probe has been applied once it is back. Raise when it does not come back in time.
        """
        probe = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        with self.engine.connect() as other:
            _check_announcing(other)
            other.execute(sa.text("SELECT pg_notify(:channel, :probe)"), {"channel": CHANNEL, "probe": probe})
            other.commit()
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(
                    f"announcements stopped arriving (no probe back in {PROBE_TIMEOUT_S:.0f} s)"
                )
            ready = {key.fileobj for key, _ in selector.select(remaining)}
            if self._wake_read in ready:
                return False
            if ready:
                connection.poll()
                if self._apply(connection.notifies, probe):
                    return True

    def _apply(self, notifies: list[Any], probe: str | None = None) -> bool:
        """Apply the announcements received; tell whether `probe` was among them."""
        payloads = {notify.payload for notify in notifies}
        notifies.clear()
        user_ids = {payload for payload in payloads if not payload.startswith(PROBE_PREFIX)}
        if ALL_HOUSEHOLDS in user_ids:
            self.cache.clear()
        elif user_ids:
            self.cache.invalidate(user_ids)
        return probe in payloads

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too
                connection.close()


def _check_announcing(connection: sa.Connection) -> None:
    """Raise unless this database announces every change: a primary with every trigger enabled.

    A standby cannot take writes to announce, and a missing (not yet migrated) or disabled
    trigger would leave changes unannounced: the cache must not answer then.
    """
    primary, enabled = connection.execute(sa.text(_ANNOUNCING_SQL)).one()
    missing = ANNOUNCING_TRIGGERS - set(enabled or ())
    if not primary:
        raise RuntimeError("the database is a standby; changes are announced on the primary only")
    if missing:
        raise RuntimeError(
            f"change announcements are not in place (missing or disabled: {sorted(missing)[0]})"
        )
