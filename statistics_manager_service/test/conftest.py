"""Shared fixtures: real PostgreSQL (a database per test session) and SQLite, the app, tokens."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from statistics_manager_service.app import create_app
from statistics_manager_service.config import Settings
from statistics_manager_service.consumer_state import ConsumerStateBoard
from statistics_manager_service.context import ServiceContext, build_context
from statistics_manager_service.storage.tables import Base
from statistics_manager_service.tokens import issue_token

pytest_plugins = ["statistics_manager_service.test.support.kafka_fixtures"]

POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
# Generated per test session: the service refuses every key written in the repository.
TEST_JWT_KEY = secrets.token_urlsafe(64)
BACKENDS = [b.strip() for b in os.environ.get("TEST_DATABASES", "postgresql,sqlite").split(",") if b.strip()]


def _admin_engine() -> sa.Engine:
    return sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


def create_postgres_database(prefix: str = "sm_test") -> str:
    """Create an empty PostgreSQL database and return its URL."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    engine = _admin_engine()
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    """Drop a database created by `create_postgres_database`, closing its connections."""
    name = make_url(url).database
    engine = _admin_engine()
    with engine.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def terminate_backends(engine: sa.Engine, condition: str = "TRUE") -> int:
    """Close the other server connections to `engine`'s database matching `condition`, as a restart would."""
    with engine.connect() as connection:
        closed: int = connection.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                f" WHERE datname = current_database() AND pid <> pg_backend_pid() AND ({condition})"
            )
        ).scalar_one()
    return closed


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database for the whole test session."""
    url = create_postgres_database()
    yield url
    drop_postgres_database(url)


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Each database the suite runs on: PostgreSQL, then the embedded SQLite default."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'statistics.db'}"


def make_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for tests: a test signing key and fast Kafka group joins."""
    values: dict[str, object] = {
        "database_url": database_url,
        "jwt_sign_key": TEST_JWT_KEY,
        "kafka_session_timeout_ms": 6000,
        "kafka_heartbeat_interval_ms": 1000,
        # Off unless a test turns it on: a cached body may trail a commit by the notification's
        # delivery, and tests that write and read back in one thread would race with it.
        "response_cache_mb": 0,
        # Off unless a test turns it on: tests call the producer endpoints more often than a client may.
        "producer_rate_limit_per_minute": 0,
    }
    values.update(overrides)
    return Settings(**values).validate()  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def session_context(database_url: str) -> Iterator[ServiceContext]:
    """A migrated database and its engine, shared by the tests of one backend."""
    context = build_context(make_settings(database_url))
    yield context
    context.dispose()


def clear_tables(engine: sa.Engine) -> None:
    """Delete every row, children first, so each test starts from an empty database."""
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture
def context(session_context: ServiceContext) -> Iterator[ServiceContext]:
    """The shared context with empty tables and no leftover state."""
    clear_tables(session_context.engine)
    session_context.consumer_state = ConsumerStateBoard()
    session_context.forget_loaded_state()
    settings = session_context.settings
    yield session_context
    session_context.settings = settings


@pytest.fixture
def settings(context: ServiceContext) -> Settings:
    """The settings the app under test runs with."""
    return context.settings


@pytest.fixture
def app(context: ServiceContext):  # type: ignore[no-untyped-def]
    """The app with strict request and response validation."""
    return create_app(context.settings, context=context, validate_responses=True)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    """An HTTP client for the app (no network)."""
    with app.test_client() as test_client:
        yield test_client


TokenFactory = Callable[..., str]


@pytest.fixture
def token(settings: Settings) -> TokenFactory:
    """Make a signed bearer token: `token(user_id="abcdefghij")` or `token(service=True)`."""

    def make(*, user_id: str | None = None, service: bool = False, valid_for_s: int = 3600) -> str:
        return issue_token(settings, user_id=user_id, service=service, valid_for_s=valid_for_s)

    return make


@pytest.fixture
def auth_headers(token: TokenFactory) -> Callable[..., dict[str, str]]:
    """Headers of an authorized call: correlation id and bearer token."""

    def make(*, user_id: str | None = None, service: bool = False) -> dict[str, str]:
        return {
            "X-Correlation-ID": str(uuid.uuid4()),
            "Authorization": f"Bearer {token(user_id=user_id, service=service)}",
        }

    return make


REPO_ROOT = Path(__file__).resolve().parents[2]
