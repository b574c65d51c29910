"""payments, outbox and inbox

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
        "payments",
        sa.Column("transaction_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("merchant_id", sa.String(64), nullable=False),
        sa.Column("payment_amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("payment_type", sa.String(16), nullable=False),
        sa.Column("transaction_date", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("payments_order", "payments", ["order_id", "payment_type"])
    create_runtime_tables_v1()


def downgrade() -> None:
    drop_runtime_tables_v1()
    op.drop_index("payments_order", table_name="payments")
    op.drop_table("payments")
