"""Apply the Alembic migrations that define the schema."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext, MigrationInfo
from alembic.script import Script, ScriptDirectory
from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(database_url: str | None = None) -> Config:
    """Build an Alembic configuration pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url:
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def log_applied_migration(
    ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]
) -> None:
    """Log one migration step as Alembic applies it (its `on_version_apply` hook): revision, description."""
    if step.is_stamp:
        return
    script = step.up_revision
    description = script.doc.strip().split("\n", 1)[0] if isinstance(script, Script) else ""
    action = "upgrade" if step.is_upgrade else "downgrade"
    logger.info(
        "%s migration %s: %s",
        "applied" if step.is_upgrade else "reverted",
        step.up_revision_id,
        description,
        extra={"fields": {"migration": action, "revision": step.up_revision_id, "description": description}},
    )


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema up to `revision` inside one transaction."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """Return the revision the database is at (None when never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """Return the newest revision the package ships."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
