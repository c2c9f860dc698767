"""effective-dated contracts

Adds `contract_versions`: each household's contract (tariff type, contracted power, grid zone,
time zone) as versions holding from an effective instant. Every existing household gets its
current contract as a first version effective from the beginning (`effective_from` 0, source
`initial`), so that its statistics stay as they are; later account events add versions instead
of rewriting the contract.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "contract_versions",
        sa.Column("user_id", sa.String(length=10), nullable=False),
        sa.Column("effective_from", sa.BigInteger(), nullable=False),
        sa.Column("effective_source", sa.String(length=24), nullable=False),
        sa.Column("tariff_type", sa.String(length=16), nullable=True),
        sa.Column("contracted_power_kva", sa.Float(), nullable=True),
        sa.Column("zone", sa.String(length=8), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("modified_ms", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "effective_from", name=op.f("pk_contract_versions")),
    )
    op.execute(
        """
        INSERT INTO contract_versions (user_id, effective_from, effective_source, tariff_type,
            contracted_power_kva, zone, timezone, modified_ms, event_id, updated_at)
        SELECT user_id, 0, 'initial', tariff_type, contracted_power_kva, zone, timezone, 0, 'initial',
            updated_at
        FROM households
        """
    )


def downgrade() -> None:
    op.drop_table("contract_versions")
