"""alerts

Adds `alerts_sent`, one row per household, cause and local day whose alert was queued in the
outbox (in the same transaction), so that an alert is published at most once; and
`alert_progress`, the end of the last local day the alert job has checked per household.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 05:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts_sent",
        sa.Column("user_id", sa.String(length=10), nullable=False),
        sa.Column("cause", sa.String(length=24), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "cause", "day", name=op.f("pk_alerts_sent")),
    )
    op.create_table(
        "alert_progress",
        sa.Column("user_id", sa.String(length=10), nullable=False),
        sa.Column("checked_through", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_alert_progress")),
    )


def downgrade() -> None:
    op.drop_table("alert_progress")
    op.drop_table("alerts_sent")
