"""outbox events carry their correlation id and trace context

Adds `events.correlation_id` (the X-Correlation-ID of the request or message that queued the
event) and `events.traceparent` (the W3C trace context of its span, while tracing). Both are
nullable: rows queued before the upgrade, and rows queued outside any request or traced span,
have none. The relay sends them as Kafka headers; Debezium can place them as headers too.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch_op:
        batch_op.add_column(sa.Column("correlation_id", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("traceparent", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch_op:
        batch_op.drop_column("traceparent")
        batch_op.drop_column("correlation_id")
