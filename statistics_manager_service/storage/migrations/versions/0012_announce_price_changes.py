"""announce price changes

Every statement that changes `energy_prices` on PostgreSQL sends one
`NOTIFY statistics_changed, '~prices-changed~'` (delivered at commit). A stored statistic changes with
prices only for the households priced by them, and those are announced as their rows are
rewritten; answers that price a household's consumption under every tariff option (the tariff
comparison) depend on the zone's prices whatever the household's tariff, and are dropped from the
response cache on this announcement. SQLite has no notifications: nothing to create there.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 05:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "statistics_changed"
PRICES_CHANGED = "~prices-changed~"
EVENTS = (("inserted", "INSERT"), ("updated", "UPDATE"), ("deleted", "DELETE"), ("truncated", "TRUNCATE"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION statistics_announce_prices() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '{PRICES_CHANGED}');
            RETURN NULL;
        END
        $$
        """
    )
    for suffix, event in EVENTS:
        op.execute(
            f"CREATE TRIGGER energy_prices_{suffix}_announce AFTER {event} ON energy_prices"
            " FOR EACH STATEMENT EXECUTE FUNCTION statistics_announce_prices()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for suffix, _ in EVENTS:
        op.execute(f"DROP TRIGGER IF EXISTS energy_prices_{suffix}_announce ON energy_prices")
    op.execute("DROP FUNCTION IF EXISTS statistics_announce_prices()")
