"""succeeded_sagas: the sagas this service knows succeeded, which no compensation undoes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from alembic import op

from saga_log.runtime import create_succeeded_table_v1

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_succeeded_table_v1()


def downgrade() -> None:
    op.drop_table("succeeded_sagas")
