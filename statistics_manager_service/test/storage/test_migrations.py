"""The Alembic migrations build exactly the schema the ORM describes, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from statistics_manager_service.query.notifications import ANNOUNCING_TRIGGERS
from statistics_manager_service.storage import migrate
from statistics_manager_service.storage.engine import make_engine
from statistics_manager_service.storage.tables import Base
from statistics_manager_service.test.conftest import create_postgres_database, drop_postgres_database


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
