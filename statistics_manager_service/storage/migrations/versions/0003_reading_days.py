"""readings as day rows of packed arrays; only days stored as statistics

Moves `raw_readings` (a row per reading) into `reading_days` (a row per household, source and
UTC day), household by household in batches of bounded size, and drops every row of
`statistics_periods` but the daily ones: quarter hours and hours are computed from the readings,
weeks, months and years from the days, when asked for. Daily rows are kept as they are. The whole upgrade is one transaction: an interrupted upgrade
leaves the previous revision intact and is run again from the start. Published outbox rows are
deleted and `events.sent_at` dropped: the relay now deletes rows once published. On PostgreSQL the packed
columns are compressed whatever the row's size (lz4 where the server has it), and changes to
`reading_days` are announced like those of the tables of 0002.

Downgrade restores `raw_readings` from the day rows; the other levels of the previous revision
are then rebuilt by its own code (`rebuild`), not by the downgrade.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 01:00:00
"""

from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa
from alembic import op

from statistics_manager_service.storage.readings import (
    DAY_COLUMNS,
    READING_COLUMNS,
    decode_days,
    encode_days,
    merge_duplicates,
)

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PACKED_COLUMNS = (
    "ts_offsets",
    "energy_imported_wh",
    "energy_exported_wh",
    "energy_generated_wh",
    "power_imported_w",
    "power_exported_w",
    "voltage_v",
)
REQUIRED_PACKED = ("ts_offsets", "energy_imported_wh", "energy_exported_wh")
HOUSEHOLDS_PER_BATCH = 200
# Bytes from which PostgreSQL compresses a row's values (the smallest it takes; default ~2 kB).
TOAST_TUPLE_TARGET = 128
ROW_EVENTS = (("inserted", "INSERT", "NEW"), ("updated", "UPDATE", "NEW"), ("deleted", "DELETE", "OLD"))


def _reading_days_table() -> sa.TableClause:
    return sa.table("reading_days", *(sa.column(name) for name in DAY_COLUMNS))


def _raw_readings_table() -> sa.TableClause:
    return sa.table("raw_readings", *(sa.column(name) for name in READING_COLUMNS))


def _batches(connection: sa.Connection, table: str) -> list[list[str]]:
    users = connection.execute(sa.text(f"SELECT DISTINCT user_id FROM {table} ORDER BY user_id")).scalars()
    ordered = list(users)
    return [ordered[i : i + HOUSEHOLDS_PER_BATCH] for i in range(0, len(ordered), HOUSEHOLDS_PER_BATCH)]


def upgrade() -> None:
    op.create_table(
        "reading_days",
        sa.Column("user_id", sa.String(length=10), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("day", sa.BigInteger(), nullable=False),
        sa.Column("reading_count", sa.Integer(), nullable=False),
        sa.Column("first_ts", sa.BigInteger(), nullable=False),
        sa.Column("last_ts", sa.BigInteger(), nullable=False),
        *(sa.Column(name, sa.LargeBinary(), nullable=name not in REQUIRED_PACKED) for name in PACKED_COLUMNS),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "source", "day", name=op.f("pk_reading_days")),
    )
    connection = op.get_bind()
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        # Compress every packed value, not only those of rows past ~2 kB, and keep them in the row.
        op.execute(f"ALTER TABLE reading_days SET (toast_tuple_target = {TOAST_TUPLE_TARGET})")
        for name in PACKED_COLUMNS:
            op.execute(f"ALTER TABLE reading_days ALTER COLUMN {name} SET STORAGE MAIN")
            if _has_lz4(connection):
                op.execute(f"ALTER TABLE reading_days ALTER COLUMN {name} SET COMPRESSION lz4")
    raw, days = _raw_readings_table(), _reading_days_table()
    for users in _batches(connection, "raw_readings"):
        statement = sa.select(*(raw.c[name] for name in READING_COLUMNS)).where(raw.c.user_id.in_(users))
        readings = pd.DataFrame(connection.execute(statement).all(), columns=READING_COLUMNS)
        readings = readings.astype(dict.fromkeys(READING_COLUMNS[3:], "float64") | {"ts": "int64"})
        rows = encode_days(merge_duplicates(readings), updated_at=_now(connection))
        connection.execute(sa.insert(days), [dict(zip(DAY_COLUMNS, row, strict=True)) for row in rows])
    op.execute("DELETE FROM statistics_periods WHERE granularity <> 'daily'")
    op.drop_table("raw_readings")
    # The relay deletes what it publishes: rows already published go, and `sent_at` with them.
    op.execute("DELETE FROM events WHERE sent_at IS NOT NULL")
    with op.batch_alter_table("events") as batch_op:
        batch_op.drop_index("ix_events_unsent")
        batch_op.drop_column("sent_at")
    if postgres:
        for suffix, event, transition in ROW_EVENTS:
            op.execute(
                f"CREATE TRIGGER reading_days_{suffix}_announce AFTER {event} ON reading_days"
                f" REFERENCING {transition} TABLE AS changed_rows"
                " FOR EACH STATEMENT EXECUTE FUNCTION statistics_announce_households()"
            )
        op.execute(
            "CREATE TRIGGER reading_days_truncated_announce AFTER TRUNCATE ON reading_days"
            " FOR EACH STATEMENT EXECUTE FUNCTION statistics_announce_all()"
        )


def _has_lz4(connection: sa.Connection) -> bool:
    """Whether the server can compress TOAST values with lz4 (PostgreSQL 14+, built with it)."""
    statement = sa.text(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
    )
    return bool(connection.execute(statement).scalar())


def _now(connection: sa.Connection) -> int:
    """The database's current time in epoch seconds (the moved rows' `updated_at`)."""
    if connection.dialect.name == "postgresql":
        return int(connection.execute(sa.text("SELECT extract(epoch FROM now())::bigint")).scalar_one())
    return int(connection.execute(sa.text("SELECT CAST(strftime('%s', 'now') AS INTEGER)")).scalar_one())


def downgrade() -> None:
    with op.batch_alter_table("events") as batch_op:
        batch_op.add_column(sa.Column("sent_at", sa.BigInteger(), nullable=True))
        batch_op.create_index("ix_events_unsent", ["sent_at", "seq"], unique=False)
    op.create_table(
        "raw_readings",
        sa.Column("user_id", sa.String(length=10), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("energy_imported_wh", sa.Float(), nullable=False),
        sa.Column("energy_exported_wh", sa.Float(), nullable=False),
        sa.Column("energy_generated_wh", sa.Float(), nullable=True),
        sa.Column("power_imported_w", sa.Float(), nullable=True),
        sa.Column("power_exported_w", sa.Float(), nullable=True),
        sa.Column("voltage_v", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", "source", "ts", name=op.f("pk_raw_readings")),
    )
    connection = op.get_bind()
    raw, days = _raw_readings_table(), _reading_days_table()
    for users in _batches(connection, "reading_days"):
        statement = sa.select(*(days.c[name] for name in DAY_COLUMNS)).where(days.c.user_id.in_(users))
        readings = decode_days(pd.DataFrame(connection.execute(statement).all(), columns=DAY_COLUMNS))
        records = readings[READING_COLUMNS].astype(object).where(readings[READING_COLUMNS].notna(), None)
        connection.execute(
            sa.insert(raw), [{str(k): v for k, v in r.items()} for r in records.to_dict("records")]
        )
    op.drop_table("reading_days")
