"""announce statistics changes

Every statement that changes `statistics_periods`, `households` or `consumption_curves` on
PostgreSQL sends one `NOTIFY statistics_changed, '<user_id>'` per household it touched (delivered at
commit, once per household and transaction); a `TRUNCATE` sends `'*'`. API processes listening on
the channel drop the cached responses of those households. SQLite has no notifications: nothing to create there.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 06:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "statistics_changed"
TABLES = ("statistics_periods", "households", "consumption_curves")
# (trigger suffix, event, transition table)
ROW_EVENTS = (("inserted", "INSERT", "NEW"), ("updated", "UPDATE", "NEW"), ("deleted", "DELETE", "OLD"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION statistics_announce_households() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', user_id) FROM (SELECT DISTINCT user_id FROM changed_rows) AS users;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION statistics_announce_all() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '*');
            RETURN NULL;
        END
        $$
        """
    )
    for table in TABLES:
        for suffix, event, transition in ROW_EVENTS:
            op.execute(
                f"CREATE TRIGGER {table}_{suffix}_announce AFTER {event} ON {table}"
                f" REFERENCING {transition} TABLE AS changed_rows"
                " FOR EACH STATEMENT EXECUTE FUNCTION statistics_announce_households()"
            )
        op.execute(
            f"CREATE TRIGGER {table}_truncated_announce AFTER TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION statistics_announce_all()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        for suffix, _, _ in ROW_EVENTS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_{suffix}_announce ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_truncated_announce ON {table}")
    op.execute("DROP FUNCTION IF EXISTS statistics_announce_households()")
    op.execute("DROP FUNCTION IF EXISTS statistics_announce_all()")
