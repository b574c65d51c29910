"""cancelled_sagas: sagas the order service cancelled, so late events are not applied

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cancelled_sagas",
        sa.Column("order_id", sa.String(64), primary_key=True),
        sa.Column("reason", sa.String(128), nullable=False),
        sa.Column(
            "cancelled_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def downgrade() -> None:
    op.drop_table("cancelled_sagas")
