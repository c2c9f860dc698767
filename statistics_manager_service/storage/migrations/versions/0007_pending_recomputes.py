"""pending zone recomputations

Adds `pending_recomputes`: what remains of a zone-wide recomputation after a grid signal, done a
bounded chunk of households per transaction by the workers.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pending_recomputes",
        sa.Column("zone", sa.String(length=8), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("start_s", sa.BigInteger(), nullable=False),
        sa.Column("end_s", sa.BigInteger(), nullable=False),
        sa.Column("cause", sa.String(length=16), nullable=False),
        sa.Column("after_user_id", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("zone", "scope", "start_s", "end_s", name=op.f("pk_pending_recomputes")),
    )


def downgrade() -> None:
    op.drop_table("pending_recomputes")
