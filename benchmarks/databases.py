"""Scratch PostgreSQL databases for the benchmarks: created, handed over, and always dropped."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import make_url

# The server the benchmarks use (127.0.0.1:5432, trust auth), as the tests' TEST_POSTGRES_ADMIN_URL.
ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


@contextlib.contextmanager
def benchmark_database(prefix: str, template_url: str | None = None) -> Iterator[str]:
    """Create a database (empty, or a copy of `template_url`'s), yield its URL, and drop it afterwards,
    also on failure."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    template = f' TEMPLATE "{make_url(template_url).database}"' if template_url else ""
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"{template}'))
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
