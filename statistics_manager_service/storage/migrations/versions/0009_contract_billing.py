"""billing terms in the contract history

Adds to `contract_versions` the household's billing terms as account events state them:
`billing_day` (the day of the month, 1-28, its billing periods start on), `large_family` (the
larger reduced-VAT allowance) and `bill_budget_eur` (its budget for one billing period, EUR after
taxes; 0 where a version cleared it). All are nullable: NULL is a version that does not state the
field, so the value in force before it holds on, as for the other contract fields. Existing
versions state none of them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contract_versions") as batch_op:
        batch_op.add_column(sa.Column("billing_day", sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column("large_family", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("bill_budget_eur", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contract_versions") as batch_op:
        batch_op.drop_column("bill_budget_eur")
        batch_op.drop_column("large_family")
        batch_op.drop_column("billing_day")
