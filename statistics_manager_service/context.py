"""What the API, the consumer and the relay of one process share, and how it is built."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from statistics_manager_service.config import Settings
from statistics_manager_service.consumer_state import ConsumerStateBoard
from statistics_manager_service.query.cache import ResponseCache
from statistics_manager_service.query.notifications import ChangeListener
from statistics_manager_service.rate_limit import TokenBuckets
from statistics_manager_service.storage import migrate
from statistics_manager_service.storage.engine import make_engine, make_read_engine, make_session_factory

if TYPE_CHECKING:
    from statistics_manager_service.event_producers.relay import OutboxRelay
    from statistics_manager_service.recompute import StatisticsUpdater


@dataclasses.dataclass(frozen=True)
class BrokerCheck:
    """When the broker was last probed (monotonic seconds), and why it was unreachable (None: it was)."""

    at_s: float
    error: str | None


@dataclasses.dataclass
class ServiceContext:
    """What the controllers and background workers share: settings, engine, sessions, health."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    # What this process's pod runs (`all`, `api`, `worker`): readiness checks what the role needs.
    role: str = "all"
    # Where the pod's consumer reports its state (read by `/ready` in every server process).
    consumer_state: ConsumerStateBoard = dataclasses.field(default_factory=ConsumerStateBoard)
    # The engine of single-statement reads (autocommit, no ping); `engine` when unset.
    read_engine: Engine | None = None
    read_session_factory: sessionmaker[Session] | None = None
    # Historic-series bodies until their households change (PostgreSQL only; None: disabled).
    response_cache: ResponseCache | None = None
    change_listener: ChangeListener | None = None
    # Made when first needed: the tariff book in force and the engine's recomputation (see
    # `tariff_loading.updater_for`); the outbox relay of this process; the last broker probe.
    statistics: StatisticsUpdater | None = None
    relay: OutboxRelay | None = None
    broker_check: BrokerCheck | None = None
    producer_buckets: TokenBuckets | None = None

    def forget_loaded_state(self) -> None:
        """Drop what was made when first needed, as a restart would (the tariff book is read again)."""
        self.statistics = None
        self.relay = None
        self.broker_check = None
        self.producer_buckets = None

    def producer_limiter(self) -> TokenBuckets | None:
        """This process's buckets of producer calls per caller (None: not limited)."""
        if self.settings.producer_rate_limit_per_minute == 0:
            return None
        if self.producer_buckets is None:
            self.producer_buckets = TokenBuckets(
                self.settings.producer_rate_limit_per_minute, self.settings.producer_rate_limit_burst
            )
        return self.producer_buckets

    @property
    def reads(self) -> sessionmaker[Session]:
        """The session factory of single-statement reads."""
        return self.read_session_factory or self.session_factory

    def series_cache(self) -> ResponseCache | None:
        """The response cache, its listener started on first use (in the process that serves)."""
        if self.change_listener is not None:
            self.change_listener.start()
        return self.response_cache

    def dispose(self) -> None:
        """Stop listening and close every pooled connection of both engines."""
        if self.change_listener is not None:
            self.change_listener.stop()
        self.engine.dispose()
        if self.read_engine is not None and self.read_engine is not self.engine:
            self.read_engine.dispose()


def build_context(settings: Settings, role: str = "all", state_dir: Path | None = None) -> ServiceContext:
    """Create the engine and session factory (and migrate when asked).

    `state_dir` is where the pod's consumer publishes its state (None: in this process's memory).
    """
    pools = settings.database_pools(role)
    engine = make_engine(settings.database_url, pools.pool_size, pools.max_overflow)
    if settings.run_migrations_on_start:
        migrate.upgrade(engine)
    read_engine = make_read_engine(settings.database_url, engine, pools.pool_size, pools.max_overflow)
    cache = listener = None
    if settings.response_cache_mb > 0 and engine.dialect.name == "postgresql":
        cache = ResponseCache(settings.response_cache_mb * 1024 * 1024)
        listener = ChangeListener(engine, cache)
    return ServiceContext(
        settings=settings,
        engine=engine,
        session_factory=make_session_factory(engine),
        read_engine=read_engine,
        read_session_factory=make_session_factory(read_engine),
        response_cache=cache,
        change_listener=listener,
        role=role,
        consumer_state=ConsumerStateBoard(state_dir),
    )
