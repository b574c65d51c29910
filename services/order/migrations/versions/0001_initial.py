"""orders, order_sagas, outbox and inbox

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from saga_log.runtime import create_runtime_tables_v1, drop_runtime_tables_v1

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("order_id", sa.String(64), primary_key=True),
        sa.Column("order_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("order_status", sa.String(32), nullable=False),
        sa.Column("items", postgresql.JSONB, nullable=False),
    )
    op.create_table(
        "order_sagas",
        sa.Column("order_id", sa.String(64), primary_key=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("cause", sa.String(64)),
        sa.Column("failed_compensation", sa.String(64)),
        sa.Column("compensation_error", sa.String(64)),
        sa.Column(
            "payment_transactions",
            postgresql.JSONB,
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        sa.Column(
            "inventory_transactions",
            postgresql.JSONB,
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
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
    op.drop_table("order_sagas")
    op.drop_table("orders")
