"""Database engine, session factory and the session scope the callers own."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg2
from sqlalchemy import create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from statistics_manager_service import metrics

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Errors of the database being away or overloaded, not of the work at hand: what meets one waits
# and tries again, and never blames (dead-letters, passes over) what it was doing.
TRANSIENT_ERRORS = (
    psycopg2.OperationalError,  # raised as is by the raw COPY cursors (shutdown, deadlock, timeout)
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)


def _enable_sqlite_concurrency(dbapi_connection: Any, _record: Any) -> None:
    """Let the API, the consumer and the relay share one SQLite file safely."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _count_pool_usage(engine: Engine) -> None:
    """Keep the pool gauges current from the pool's own events (each process counts its own)."""
    size = getattr(engine.pool, "size", None)
    metrics.DB_POOL_SIZE.inc(size() if callable(size) else 0)
    event.listen(engine, "checkout", lambda *_: metrics.DB_POOL_IN_USE.inc())
    event.listen(engine, "checkin", lambda *_: metrics.DB_POOL_IN_USE.dec())


def make_engine(database_url: str, pool_size: int = 10, max_overflow: int | None = None) -> Engine:
    """Create the engine: pre-ping pool on servers (overflow `pool_size` unless given), WAL on SQLite."""
    engine = _make_engine(database_url, pool_size, pool_size if max_overflow is None else max_overflow)
    _count_pool_usage(engine)
    return engine


def _make_engine(database_url: str, pool_size: int, max_overflow: int) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            pool_pre_ping=True,
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        event.listen(engine, "connect", _enable_sqlite_concurrency)
        return engine
    return _make_server_engine(database_url, pool_size, max_overflow, pool_pre_ping=True)


def _make_server_engine(database_url: str, pool_size: int, max_overflow: int, **options: Any) -> Engine:
    """An engine on a database server, with the pool settings the main and read engines share."""
    url = make_url(database_url)
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=1800,
        pool_timeout=10,
        connect_args={"connect_timeout": 5} if url.get_backend_name() == "postgresql" else {},
        **options,
    )
    event.listen(engine, "handle_error", _name_the_budget_when_refused)
    return engine


# What PostgreSQL answers when it has no connection slot left (for the server, a role or a database).
CAPACITY_REFUSALS = ("too many clients", "too many connections", "remaining connection slots are reserved")
CONNECTIONS_SETTING = "DATABASE_CONNECTIONS_PER_POD"


def refused_for_capacity(error: BaseException) -> bool:
    """Tell whether the database refused a connection because it has no slot left."""
    text = str(error).lower()
    return any(refusal in text for refusal in CAPACITY_REFUSALS)


def _name_the_budget_when_refused(context: Any) -> None:
    if refused_for_capacity(context.original_exception):
        logger.error(
            "the database refused a connection, it has no slot left: the pods together open more than"
            " its max_connections allows; lower %s or the replica count (or raise max_connections): %s",
            CONNECTIONS_SETTING,
            str(context.original_exception).splitlines()[0],
        )


def make_read_engine(
    database_url: str, engine: Engine, pool_size: int = 10, max_overflow: int | None = None
) -> Engine:
    """Return the engine of single-statement reads: one round trip per query on a server.

    On a server database its connections run in autocommit mode (no `BEGIN`/`COMMIT` around a
    lone `SELECT`) and are not pinged at check-out; a connection found dead is replaced by
    `read_call`'s retry instead. SQLite reads share `engine`.
    """
    if make_url(database_url).get_backend_name() == "sqlite":
        return engine
    overflow = pool_size if max_overflow is None else max_overflow
    read_engine = _make_server_engine(database_url, pool_size, overflow, isolation_level="AUTOCOMMIT")
    _count_pool_usage(read_engine)
    return read_engine


def read_call(factory: sessionmaker[Session], call: Callable[..., T], *args: Any) -> T:
    """Run the read `call(session, *args)`, once more on a fresh connection if the pooled one was dead.

    A database restart leaves the pool's connections closed; the first use of each fails with a
    disconnect, which invalidates the pool. Reads have no effects, so repeating one is safe.
    """
    try:
        with session_scope(factory) as session:
            return call(session, *args)
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
        logger.info("database connection was closed; repeating the read on a new one")
    with session_scope(factory) as session:
        return call(session, *args)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return the session factory every request and consumed batch draws from."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Open a session, commit when the block succeeds and roll back when it raises."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def ping(engine: Engine) -> None:
    """Run a trivial query; raise when the database cannot be reached."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
