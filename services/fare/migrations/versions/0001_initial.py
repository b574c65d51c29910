"""fares, fare_sagas, outbox and inbox

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from saga_log.runtime import create_runtime_tables_v1, drop_runtime_tables_v1

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fares",
        sa.Column("fare_id", sa.String(64), primary_key=True),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("fare_amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("card_last4", sa.String(4)),
        sa.Column("fare_status", sa.String(16)),
    )
    op.create_table(
        "fare_sagas",
        sa.Column("fare_id", sa.String(64), primary_key=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("failed_compensation", sa.Text),
        sa.Column("charge_token", sa.String(64)),
        sa.Column("charge_id", sa.String(64)),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    create_runtime_tables_v1()


def downgrade() -> None:
    drop_runtime_tables_v1()
    op.drop_table("fare_sagas")
    op.drop_table("fares")
