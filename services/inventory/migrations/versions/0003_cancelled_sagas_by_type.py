"""cancelled_sagas keyed by saga type and id (a service may take part in several sagas)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from saga_log.runtime import (
    downgrade_cancellation_table_v2_to_v1,
    upgrade_cancellation_table_v1_to_v2,
)

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    upgrade_cancellation_table_v1_to_v2()


def downgrade() -> None:
    downgrade_cancellation_table_v2_to_v1()
