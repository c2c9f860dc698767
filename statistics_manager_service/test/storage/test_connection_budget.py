"""The pod's database connections follow DATABASE_CONNECTIONS_PER_POD, and a database without a
free slot stops the start-up with a message naming the setting to lower."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from statistics_manager_service.config import ConfigurationError
from statistics_manager_service.context import build_context
from statistics_manager_service.test.conftest import (
    POSTGRES_ADMIN_URL,
    REPO_ROOT,
    TEST_JWT_KEY,
    make_settings,
)
from statistics_manager_service.test.support.cli import clean_env, run_service


def _pool_limits(engine: sa.Engine) -> tuple[int, int]:
    pool = engine.pool
    return pool.size(), pool._max_overflow  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("role", "web_workers", "processes", "pool_size", "max_overflow"),
    [
        # One process: (24 - 1 listener) // 2 = 11 per pool: 10 kept, 1 overflow.
        ("worker", 4, 1, 10, 1),
        # 2 server processes and the supervising one: 24 // 3 = 8, minus the listener, 3 per pool.
        ("all", 2, 3, 3, 0),
        # 3 server processes: 8 each, the same.
        ("api", 3, 3, 3, 0),
    ],
)
def test_pools_divide_the_pods_budget_among_its_processes(
    postgres_url: str, role: str, web_workers: int, processes: int, pool_size: int, max_overflow: int
) -> None:
    settings = make_settings(
        postgres_url,
        database_connections_per_pod=24,
        web_workers=web_workers,
        response_cache_mb=8,
        run_migrations_on_start=False,
    )
    pools = settings.database_pools(role)
    assert (pools.processes, pools.pool_size, pools.max_overflow, pools.listener) == (
        processes,
        pool_size,
        max_overflow,
        1,
    )
    assert pools.processes * pools.per_process <= 24
    context = build_context(settings, role)
    try:
        assert context.read_engine is not None and context.read_engine is not context.engine
        assert _pool_limits(context.engine) == (pool_size, max_overflow)
        assert _pool_limits(context.read_engine) == (pool_size, max_overflow)
    finally:
        context.dispose()


def test_a_budget_too_small_for_the_processes_is_refused_naming_the_setting(postgres_url: str) -> None:
    settings = make_settings(postgres_url, database_connections_per_pod=8, web_workers=3, response_cache_mb=8)
    with pytest.raises(ConfigurationError, match="DATABASE_CONNECTIONS_PER_POD=8 leaves 2 connections"):
        settings.database_pools("api")


@pytest.fixture
def refused_database_url(postgres_url: str) -> Iterator[str]:
    """A role the server admits no connection for (CONNECTION LIMIT 0): the database is full for it."""
    role = f"sm_full_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0'))
    try:
        yield make_url(postgres_url).set(username=role).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def test_a_start_the_database_refuses_for_lack_of_slots_names_the_setting_to_lower(
    refused_database_url: str, tmp_path: Path
) -> None:
    env = clean_env(
        PYTHONPATH=str(REPO_ROOT),
        DATABASE_URL=refused_database_url,
        JWT_SIGN_KEY=TEST_JWT_KEY,
        WEB_WORKERS="1",
    )
    result = run_service("--role", "api", cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 3, result.stderr
    assert "too many connections for role" in result.stderr
    assert "lower DATABASE_CONNECTIONS_PER_POD" in result.stderr
    assert "Traceback" not in result.stderr
