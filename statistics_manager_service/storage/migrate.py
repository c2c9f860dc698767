"""Apply the Alembic migrations that define the schema."""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext, MigrationInfo
from alembic.script import Script, ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The PostgreSQL advisory lock that serializes schema upgrades: pods that start together each run
# `db upgrade`; one applies the migrations, the others wait for it and then find nothing to do. A
# single 64-bit key: that key space does not overlap the (namespace, key) pairs of the zone locks.
MIGRATION_LOCK_KEY = int.from_bytes(b"SMschema", "big")

# How the database's schema compares with the newest revision this code ships.
SchemaState = Literal["current", "behind", "ahead"]


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
        if connection.dialect.name == "postgresql":
            # Held until this transaction ends; Alembic reads the current revision only after it.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """Return the revision the database is at (None when never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """Return the newest revision the package ships."""
    return _shipped_revisions()[0]


@functools.cache
def _shipped_revisions() -> tuple[str | None, frozenset[str]]:
    """Return the newest revision the package ships and every revision it knows (read once)."""
    script = ScriptDirectory.from_config(alembic_config())
    return script.get_current_head(), frozenset(step.revision for step in script.walk_revisions())


def schema_state(revision: str | None) -> SchemaState:
    """Compare a database's revision with this code's: older or unset is behind, unknown is ahead."""
    head, known = _shipped_revisions()
    if revision == head:
        return "current"
    if revision is None or revision in known:
        return "behind"
    # A newer release has migrated the database (its revision is not in this package yet).
    return "ahead"
