"""/ready keeps a process out of service while the database's schema is older than its code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from statistics_manager_service.app import create_app
from statistics_manager_service.context import build_context
from statistics_manager_service.storage import migrate
from statistics_manager_service.test.conftest import (
    BACKENDS,
    create_postgres_database,
    drop_postgres_database,
    make_settings,
)

READY = "/api/statistics/ready"


@pytest.fixture(params=BACKENDS)
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'schema.db'}"
        return
    url = create_postgres_database("sm_ready")
    yield url
    drop_postgres_database(url)


def _ready(database_url: str) -> tuple[int, dict[str, Any]]:
    """Ask /ready of an app that does not migrate on start."""
    settings = make_settings(database_url, run_migrations_on_start=False)
    context = build_context(settings)
    try:
        with create_app(settings, context=context, validate_responses=True).test_client() as client:
            response = client.get(READY)
            return response.status_code, response.json()
    finally:
        context.dispose()


def test_ready_waits_for_the_schema_to_reach_this_release(fresh_database: str) -> None:
    head = migrate.head_revision()
    assert head is not None and head != "0002"

    status, body = _ready(fresh_database)  # never migrated
    assert status == 503
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["schema"] == "behind"
    assert body["errors"]["schema"] == f"database schema at revision none, this release needs {head}"

    engine = sa.create_engine(fresh_database)
    migrate.upgrade(engine, "0002")  # a database an earlier release left behind
    status, body = _ready(fresh_database)
    assert status == 503
    assert body["status"] == "degraded"
    assert body["checks"] == {"database": "ok", "schema": "behind", "broker": "disabled"}
    assert body["errors"] == {"schema": f"database schema at revision 0002, this release needs {head}"}

    migrate.upgrade(engine)
    status, body = _ready(fresh_database)
    assert (status, body) == (
        200,
        {"status": "ready", "checks": {"database": "ok", "schema": "ok", "broker": "disabled"}},
    )
    engine.dispose()


def test_ready_keeps_serving_while_a_newer_release_has_migrated(fresh_database: str) -> None:
    """During a rollout the old pods see the new revision: still ready (migrations stay compatible)."""
    engine = sa.create_engine(fresh_database)
    migrate.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = 'f0f0_from_a_newer_release'"))
    engine.dispose()
    assert migrate.schema_state("f0f0_from_a_newer_release") == "ahead"
    status, body = _ready(fresh_database)
    assert status == 200
    assert body["checks"]["schema"] == "ahead"
    assert "errors" not in body
