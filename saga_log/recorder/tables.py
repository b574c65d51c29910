"""The saga history's database: every event as it came (secret fields masked), and each
saga's derived state, by saga type and id."""

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

from saga_log.runtime import add_runtime_tables

metadata = MetaData()

saga_events = Table(
    "saga_events",
    metadata,
    Column("message_id", String(255), primary_key=True),
    Column("saga_type", String(64), nullable=False),
    Column("saga_id", String(64), nullable=False),
    Column("causation_id", String(255)),
    Column("type", String(128), nullable=False),
    Column("producer", String(64)),
    Column("routing_key", String(255)),
    Column("occurred_at", DateTime(timezone=True)),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("headers", JSONB, nullable=False),
    Index("saga_events_saga", "saga_id", "received_at"),
)

sagas = Table(
    "sagas",
    metadata,
    Column("saga_type", String(64), nullable=False),
    Column("saga_id", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("current_step", String(64)),
    Column("started_at", DateTime(timezone=True)),
    Column("last_event_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    Column("cause", Text),
    Column("attention", Text),
    Column("event_count", Integer, nullable=False),
    Column("state", JSONB, nullable=False),
    PrimaryKeyConstraint("saga_type", "saga_id"),
    Index("sagas_status", "status", "last_event_at"),
    Index("sagas_started", "started_at"),
    Index("sagas_id", "saga_id"),
)

outbox, inbox = add_runtime_tables(metadata)
