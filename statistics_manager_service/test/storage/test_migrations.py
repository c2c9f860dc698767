"""The Alembic migrations build exactly the schema the ORM describes, on both databases, once."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from statistics_manager_service.query.notifications import ANNOUNCING_TRIGGERS
from statistics_manager_service.storage import migrate
from statistics_manager_service.storage.engine import make_engine
from statistics_manager_service.storage.tables import Base
from statistics_manager_service.test.conftest import (
    TEST_JWT_KEY,
    create_postgres_database,
    drop_postgres_database,
)
from statistics_manager_service.test.support.cli import SERVICE_COMMAND


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    url = create_postgres_database("sm_migrate")
    yield url
    drop_postgres_database(url)


def test_upgrade_from_empty_matches_the_models_and_is_repeatable(empty_database: str) -> None:
    engine = make_engine(empty_database)
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    migrate.upgrade(engine)  # a second run is a no-op
    assert migrate.current_revision(engine) == migrate.head_revision()
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
        tables = set(sa.inspect(connection).get_table_names())
    assert {table.name for table in Base.metadata.sorted_tables} <= tables
    engine.dispose()


def test_the_change_announcements_come_and_go_with_their_migration(empty_database: str) -> None:
    from alembic import command

    engine = make_engine(empty_database)

    def announcing_triggers() -> set[str]:
        if engine.dialect.name != "postgresql":
            return set()
        with engine.connect() as connection:
            return set(
                connection.execute(
                    sa.text(
                        "SELECT tgname FROM pg_trigger WHERE tgname LIKE '%_announce' AND NOT tgisinternal"
                    )
                ).scalars()
            )

    migrate.upgrade(engine, "0001")
    assert announcing_triggers() == set()
    migrate.upgrade(engine)
    # Exactly the triggers the change listener checks for before the response cache answers.
    assert announcing_triggers() == (ANNOUNCING_TRIGGERS if engine.dialect.name == "postgresql" else set())
    config = migrate.alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
    assert migrate.current_revision(engine) == "0001"
    assert announcing_triggers() == set()
    engine.dispose()


def test_the_billing_terms_of_contract_versions_come_and_go_with_their_migration(empty_database: str) -> None:
    from alembic import command

    engine = make_engine(empty_database)

    def columns() -> set[str]:
        with engine.connect() as connection:
            return {column["name"] for column in sa.inspect(connection).get_columns("contract_versions")}

    terms = {"billing_day", "large_family", "bill_budget_eur"}
    migrate.upgrade(engine, "0008")
    assert not terms & columns()
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO contract_versions (user_id, effective_from, effective_source, tariff_type,"
                " modified_ms, event_id, updated_at) VALUES ('migrated01', 0, 'initial', 'simple', 0, 'e', 0)"
            )
        )
    migrate.upgrade(engine, "0009")
    assert terms <= columns()
    with engine.begin() as connection:
        # Existing versions state no term; a new one can.
        assert connection.execute(
            sa.text("SELECT billing_day, large_family, bill_budget_eur FROM contract_versions")
        ).all() == [(None, None, None)]
        connection.execute(
            sa.text(
                "INSERT INTO contract_versions (user_id, effective_from, effective_source, modified_ms,"
                " event_id, updated_at, billing_day, large_family, bill_budget_eur)"
                " VALUES ('migrated01', 100, 'effective_from', 1, 'f', 0, 15, :large, 80.5)"
            ),
            {"large": True},
        )
        stored = connection.execute(
            sa.text(
                "SELECT billing_day, large_family, bill_budget_eur FROM contract_versions WHERE effective_from = 100"
            )
        ).one()
        assert (stored[0], bool(stored[1]), stored[2]) == (15, True, 80.5)
    config = migrate.alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0008")
    assert migrate.current_revision(engine) == "0008"
    assert not terms & columns()
    with engine.connect() as connection:
        # The versions themselves stay.
        assert connection.execute(sa.text("SELECT count(*) FROM contract_versions")).scalar_one() == 2
    migrate.upgrade(engine)
    assert terms <= columns()
    engine.dispose()


def _waiting_advisory_locks(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        waiting: int = connection.execute(
            sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        ).scalar_one()
    return waiting


def _record_ddl_by_backend(engine: sa.Engine) -> None:
    """Log every DDL command with the server process that ran it (an event trigger)."""
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE SCHEMA ddl_audit"))
        connection.execute(sa.text("CREATE TABLE ddl_audit.log (pid integer, command_tag text)"))
        connection.execute(
            sa.text(
                "CREATE FUNCTION ddl_audit.record() RETURNS event_trigger LANGUAGE plpgsql AS $$"
                " BEGIN INSERT INTO ddl_audit.log SELECT pg_backend_pid(), command_tag"
                " FROM pg_event_trigger_ddl_commands(); END $$"
            )
        )
        connection.execute(
            sa.text("CREATE EVENT TRIGGER ddl_audit ON ddl_command_end EXECUTE FUNCTION ddl_audit.record()")
        )


def test_concurrent_upgrades_on_postgresql_both_succeed_and_apply_once(tmp_path: Path) -> None:
    """Pods starting together each run `statistics-manager db upgrade` (their init container): one
    applies the migrations, the other waits for the lock and then finds nothing to do."""
    url = create_postgres_database("sm_migrate")
    observer = make_engine(url)
    _record_ddl_by_backend(observer)
    environment = {key: os.environ[key] for key in ("PATH", "HOME", "TMPDIR") if key in os.environ}
    environment |= {"DATABASE_URL": url, "JWT_SIGN_KEY": TEST_JWT_KEY}
    command = [*SERVICE_COMMAND, "db", "upgrade"]
    upgrades: list[subprocess.Popen[str]] = []
    try:
        # Hold the lock until both upgrades are surely running, and waiting, at the same time.
        with observer.connect() as holder:
            holder.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": migrate.MIGRATION_LOCK_KEY})
            for _ in range(2):
                upgrades.append(
                    subprocess.Popen(
                        command,
                        cwd=tmp_path,
                        env=environment,
                        text=True,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                    )
                )
            deadline = time.monotonic() + 120
            while _waiting_advisory_locks(observer) < 2:
                finished = [u.communicate() for u in upgrades if u.poll() is not None]
                assert not finished, f"an upgrade ended without waiting for the lock: {finished}"
                assert time.monotonic() < deadline, "the upgrades never queued for the migration lock"
                time.sleep(0.05)
            holder.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": migrate.MIGRATION_LOCK_KEY})
        head = migrate.head_revision()
        for upgrade in upgrades:
            out, err = upgrade.communicate(timeout=300)
            assert upgrade.returncode == 0, err  # both succeed
            assert f"schema revision: {head} (newest: {head})" in out
        with observer.connect() as connection:
            assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [
                head
            ]
            creators = connection.execute(
                sa.text(
                    "SELECT pid, count(*) FROM ddl_audit.log WHERE command_tag = 'CREATE TABLE' GROUP BY pid"
                )
            ).all()
        # One server process created every table; the other upgrade changed nothing.
        assert len(creators) == 1, creators
        assert creators[0][1] > len(Base.metadata.sorted_tables)  # the tables and alembic_version
    finally:
        for upgrade in upgrades:
            if upgrade.poll() is None:
                upgrade.kill()
                upgrade.communicate()
        observer.dispose()
        drop_postgres_database(url)
