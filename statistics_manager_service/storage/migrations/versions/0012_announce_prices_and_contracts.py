"""announce price and contract changes

Every statement that changes `energy_prices` on PostgreSQL sends one
`NOTIFY statistics_changed, '~prices-changed~'` (delivered at commit). A stored statistic changes
with prices only for the households priced by them, and those are announced as their rows are
rewritten; but answers that price a household's consumption at request time (the tariff
comparison's dynamic option, a bill) depend on the zone's prices whatever the household's tariff,
and are dropped from the response cache on this announcement.

`contract_versions` announces each household it touches, like the tables of 0002: a version that
changes only billing terms rewrites no statistic, yet changes that household's bills.

SQLite has no notifications: nothing to create there.

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
STATEMENT_EVENTS = (
    ("inserted", "INSERT"),
    ("updated", "UPDATE"),
    ("deleted", "DELETE"),
    ("truncated", "TRUNCATE"),
)
# (trigger suffix, event, transition table), as in 0002
ROW_EVENTS = (("inserted", "INSERT", "NEW"), ("updated", "UPDATE", "NEW"), ("deleted", "DELETE", "OLD"))


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
    for suffix, event in STATEMENT_EVENTS:
        op.execute(
            f"CREATE TRIGGER energy_prices_{suffix}_announce AFTER {event} ON energy_prices"
            " FOR EACH STATEMENT EXECUTE FUNCTION statistics_announce_prices()"
        )
    for suffix, event, transition in ROW_EVENTS:
        op.execute(
            f"CREATE TRIGGER contract_versions_{suffix}_announce AFTER {event} ON contract_versions"
            f" REFERENCING {transition} TABLE AS changed_rows"
            " FOR EACH STATEMENT EXECUTE FUNCTION statistics_announce_households()"
        )
    op.execute(
        "CREATE TRIGGER contract_versions_truncated_announce AFTER TRUNCATE ON contract_versions"
        " FOR EACH STATEMENT EXECUTE FUNCTION statistics_announce_all()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for suffix, _ in STATEMENT_EVENTS:
        op.execute(f"DROP TRIGGER IF EXISTS energy_prices_{suffix}_announce ON energy_prices")
        op.execute(f"DROP TRIGGER IF EXISTS contract_versions_{suffix}_announce ON contract_versions")
    op.execute("DROP FUNCTION IF EXISTS statistics_announce_prices()")
