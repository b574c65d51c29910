"""fare_sagas: a partial index of the running sagas, for the deadline watch

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "fare_sagas_running",
        "fare_sagas",
        ["updated_at"],
        postgresql_where=sa.text("outcome = 'running'"),
    )


def downgrade() -> None:
    op.drop_index("fare_sagas_running", table_name="fare_sagas")
