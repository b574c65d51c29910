"""account_credits, cancelled_sagas, outbox and inbox

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from saga_log.runtime import (
    create_cancellation_table_v2,
    create_runtime_tables_v1,
    drop_runtime_tables_v1,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_credits",
        sa.Column("credit_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("fare_id", sa.String(64), nullable=False, unique=True),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("charge_id", sa.String(64), nullable=False),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.Column(
            "credited_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("reversed_at", sa.DateTime(timezone=True)),
    )
    create_cancellation_table_v2()
    create_runtime_tables_v1()


def downgrade() -> None:
    drop_runtime_tables_v1()
    op.drop_table("cancelled_sagas")
    op.drop_table("account_credits")
