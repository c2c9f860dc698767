"""label each stored consumption curve value with its origin

Forecast curves come from a forecast service, from the built-in weekday baseline, or from the mock
producer; `consumption_curves.origin` says which. Rows stored before this revision came from a
forecast service or the mock producer and cannot be told apart: they are labelled `external`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("consumption_curves") as batch_op:
        batch_op.add_column(
            sa.Column("origin", sa.String(length=16), server_default="external", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("consumption_curves") as batch_op:
        batch_op.drop_column("origin")
