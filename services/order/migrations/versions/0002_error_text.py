"""order_sagas: error columns as text (an infrastructure error's message has no bound)

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

COLUMNS = ("cause", "failed_compensation", "compensation_error")


def upgrade() -> None:
    for column in COLUMNS:
        op.alter_column("order_sagas", column, type_=sa.Text(), existing_type=sa.String(64))


def downgrade() -> None:
    for column in COLUMNS:
        op.alter_column("order_sagas", column, type_=sa.String(64), existing_type=sa.Text())
