"""outbox failures

Adds to the outbox (`events`) the relay's record of an event it could not publish: `status`
(`pending`, or `failed` once its attempts are spent), `attempts` and `failed_reason`. A failed
event is kept, never deleted, and no longer blocks the events after it. Debezium's outbox router
reads only the columns it is configured with, so it ignores these.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), server_default="pending", nullable=False)
        )
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("failed_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch_op:
        batch_op.drop_column("failed_reason")
        batch_op.drop_column("attempts")
        batch_op.drop_column("status")
