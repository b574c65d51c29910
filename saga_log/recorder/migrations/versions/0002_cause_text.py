"""sagas.cause as text (an infrastructure error's message has no bound)

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
    op.alter_column("sagas", "cause", type_=sa.Text(), existing_type=sa.String(128))


def downgrade() -> None:
    op.alter_column("sagas", "cause", type_=sa.String(128), existing_type=sa.Text())
