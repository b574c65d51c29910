"""cancelled_sagas: sagas the order service cancelled, so late events are not applied

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

from saga_log.runtime import create_cancellation_table_v1

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_cancellation_table_v1()


def downgrade() -> None:
    op.drop_table("cancelled_sagas")
