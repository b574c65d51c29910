"""saga_events, sagas, outbox and inbox

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from saga_log.runtime import create_runtime_tables_v1, drop_runtime_tables_v1

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saga_events",
        sa.Column("message_id", sa.String(255), primary_key=True),
        sa.Column("saga_id", sa.String(64), nullable=False),
        sa.Column("causation_id", sa.String(255)),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("producer", sa.String(64)),
        sa.Column("routing_key", sa.String(255)),
        sa.Column("occurred_at", sa.DateTime(timezone=True)),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", postgresql.JSONB, nullable=False),
        sa.Column("headers", postgresql.JSONB, nullable=False),
    )
    op.create_index("saga_events_saga", "saga_events", ["saga_id", "received_at"])
    op.create_table(
        "sagas",
        sa.Column("saga_id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("current_step", sa.String(64)),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("last_event_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("cause", sa.String(128)),
        sa.Column("attention", sa.Text),
        sa.Column("event_count", sa.Integer, nullable=False),
        sa.Column("state", postgresql.JSONB, nullable=False),
    )
    op.create_index("sagas_status", "sagas", ["status", "last_event_at"])
    op.create_index("sagas_started", "sagas", ["started_at"])
    create_runtime_tables_v1()


def downgrade() -> None:
    drop_runtime_tables_v1()
    op.drop_table("sagas")
    op.drop_table("saga_events")
