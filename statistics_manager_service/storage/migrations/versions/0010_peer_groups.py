"""peer groups

Adds `peer_groups`: per month and group of comparable households (zone, tariff option,
contracted power band, PV or not), how many households count, the percentiles 1 to 99 of their
consumption and the median and 20th percentile shown to households (each a blend of at least
three households), as the workers' periodic job last computed them. It holds no household's id.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 05:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "peer_groups",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("zone", sa.String(length=8), nullable=False),
        sa.Column("tariff_type", sa.String(length=16), nullable=False),
        sa.Column("power_band", sa.String(length=16), nullable=False),
        sa.Column("pv", sa.Boolean(), nullable=False),
        sa.Column("households", sa.Integer(), nullable=False),
        sa.Column("percentiles_kwh", sa.Text(), nullable=True),
        sa.Column("median_kwh", sa.Float(), nullable=True),
        sa.Column("efficient_kwh", sa.Float(), nullable=True),
        sa.Column("first_day", sa.String(length=10), nullable=False),
        sa.Column("last_day", sa.String(length=10), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("computed_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "period", "zone", "tariff_type", "power_band", "pv", name=op.f("pk_peer_groups")
        ),
    )


def downgrade() -> None:
    op.drop_table("peer_groups")
