"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 02:33:36.446009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "carbon_intensity",
        sa.Column("zone", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("resolution_s", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("zone", "kind", "ts", name=op.f("pk_carbon_intensity")),
    )
    op.create_table(
        "consumption_curves",
        sa.Column("user_id", sa.String(length=10), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("energy_kwh", sa.Float(), nullable=False),
        sa.Column("computed_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "kind", "ts", name=op.f("pk_consumption_curves")),
    )
    op.create_table(
        "device_mappings",
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=10), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_mappings")),
    )
    with op.batch_alter_table("device_mappings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_device_mappings_user_id"), ["user_id"], unique=False)

    op.create_table(
        "energy_prices",
        sa.Column("zone", sa.String(length=8), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("resolution_s", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("zone", "direction", "ts", name=op.f("pk_energy_prices")),
    )
    op.create_table(
        "erased_users",
        sa.Column("user_id", sa.String(length=10), nullable=False),
        sa.Column("erased_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_erased_users")),
    )
    op.create_table(
        "events",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("aggregatetype", sa.String(length=64), nullable=False),
        sa.Column("aggregateid", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("sent_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
        sa.UniqueConstraint("id", name=op.f("uq_events_id")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_unsent", ["sent_at", "seq"], unique=False)

    op.create_table(
        "households",
        sa.Column("user_id", sa.String(length=10), nullable=False),
        sa.Column("tariff_type", sa.String(length=16), nullable=False),
        sa.Column("contracted_power_kva", sa.Float(), nullable=True),
        sa.Column("zone", sa.String(length=8), nullable=False),
        sa.Column("postal_code", sa.String(length=16), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("meter_id", sa.String(length=128), nullable=True),
        sa.Column("statistics_source", sa.String(length=16), nullable=True),
        sa.Column("first_reading_ts", sa.BigInteger(), nullable=True),
        sa.Column("last_reading_ts", sa.BigInteger(), nullable=True),
        sa.Column("closed_through", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_households")),
    )
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("processed_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_processed_events")),
    )
    with op.batch_alter_table("processed_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_processed_events_processed_at"), ["processed_at"], unique=False)

    op.create_table(
        "raw_readings",
        sa.Column("user_id", sa.String(length=10), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("energy_imported_wh", sa.Float(), nullable=False),
        sa.Column("energy_exported_wh", sa.Float(), nullable=False),
        sa.Column("energy_generated_wh", sa.Float(), nullable=True),
        sa.Column("power_imported_w", sa.Float(), nullable=True),
        sa.Column("power_exported_w", sa.Float(), nullable=True),
        sa.Column("voltage_v", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", "source", "ts", name=op.f("pk_raw_readings")),
    )
    op.create_table(
        "service_state",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_service_state")),
    )
    op.create_table(
        "statistics_periods",
        sa.Column("user_id", sa.String(length=10), nullable=False),
        sa.Column("granularity", sa.String(length=8), nullable=False),
        sa.Column("period_start", sa.BigInteger(), nullable=False),
        sa.Column("energy_imported_kwh", sa.Float(), nullable=False),
        sa.Column("energy_exported_kwh", sa.Float(), nullable=False),
        sa.Column("energy_generated_kwh", sa.Float(), nullable=True),
        sa.Column("self_consumed_kwh", sa.Float(), nullable=False),
        sa.Column("consumption_kwh", sa.Float(), nullable=False),
        sa.Column("power_imported_mean_w", sa.Float(), nullable=True),
        sa.Column("power_imported_max_w", sa.Float(), nullable=True),
        sa.Column("power_exported_mean_w", sa.Float(), nullable=True),
        sa.Column("power_exported_max_w", sa.Float(), nullable=True),
        sa.Column("power_seconds", sa.Float(), nullable=False),
        sa.Column("voltage_mean_v", sa.Float(), nullable=True),
        sa.Column("voltage_min_v", sa.Float(), nullable=True),
        sa.Column("voltage_max_v", sa.Float(), nullable=True),
        sa.Column("voltage_count", sa.BigInteger(), nullable=False),
        sa.Column("span_seconds", sa.Float(), nullable=False),
        sa.Column("covered_seconds", sa.Float(), nullable=False),
        sa.Column("reading_count", sa.BigInteger(), nullable=False),
        sa.Column("reset_detected", sa.Boolean(), nullable=False),
        sa.Column("energy_cost_eur", sa.Float(), nullable=False),
        sa.Column("fixed_cost_eur", sa.Float(), nullable=False),
        sa.Column("export_revenue_eur", sa.Float(), nullable=False),
        sa.Column("net_cost_eur", sa.Float(), nullable=False),
        sa.Column("co2_kg", sa.Float(), nullable=False),
        sa.Column("co2_avoided_kg", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "granularity", "period_start", name=op.f("pk_statistics_periods")),
    )


def downgrade() -> None:
    op.drop_table("statistics_periods")
    op.drop_table("service_state")
    op.drop_table("raw_readings")
    with op.batch_alter_table("processed_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_processed_events_processed_at"))

    op.drop_table("processed_events")
    op.drop_table("households")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_unsent")

    op.drop_table("events")
    op.drop_table("erased_users")
    op.drop_table("energy_prices")
    with op.batch_alter_table("device_mappings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_mappings_user_id"))

    op.drop_table("device_mappings")
    op.drop_table("consumption_curves")
    op.drop_table("carbon_intensity")
