"""saga_type on events and sagas: the history of every declared saga, not only orders

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Everything recorded before was an order saga's.
    for table in ("saga_events", "sagas"):
        op.add_column(
            table, sa.Column("saga_type", sa.String(64), nullable=False, server_default="order")
        )
        op.alter_column(table, "saga_type", server_default=None)
    op.drop_constraint("sagas_pkey", "sagas", type_="primary")
    op.create_primary_key("sagas_pkey", "sagas", ["saga_type", "saga_id"])
    op.create_index("sagas_id", "sagas", ["saga_id"])


def downgrade() -> None:
    op.drop_index("sagas_id", table_name="sagas")
    op.drop_constraint("sagas_pkey", "sagas", type_="primary")
    op.execute("DELETE FROM sagas WHERE saga_type <> 'order'")
    op.execute("DELETE FROM saga_events WHERE saga_type <> 'order'")
    op.create_primary_key("sagas_pkey", "sagas", ["saga_id"])
    for table in ("saga_events", "sagas"):
        op.drop_column(table, "saga_type")
