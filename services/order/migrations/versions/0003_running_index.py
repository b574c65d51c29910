"""order_sagas: a partial index of the running sagas, for the deadline watch

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "order_sagas_running",
        "order_sagas",
        ["updated_at"],
        postgresql_where=sa.text("outcome = 'running'"),
    )


def downgrade() -> None:
    op.drop_index("order_sagas_running", table_name="order_sagas")
