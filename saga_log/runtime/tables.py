"""The runtime's own tables, added to each service's schema (and so to its migrations).

- `outbox`: events written in the same transaction as the state change that caused them;
  the relay publishes them and stamps `published_at`.
- `inbox`: one row per (consumer, message_id) handled; inserted in the handler's
  transaction, so a redelivered message finds its key taken and changes nothing.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID


def add_runtime_tables(metadata: MetaData) -> tuple[Table, Table]:
    """Define `outbox` and `inbox` on `metadata`; returns them."""
    outbox = Table(
        "outbox",
        metadata,
        Column("position", BigInteger, Identity(always=True), primary_key=True),
        Column("message_id", UUID(as_uuid=True), nullable=False, unique=True),
        Column("exchange", String(255), nullable=False),
        Column("routing_key", String(255), nullable=False),
        Column("message_type", String(255), nullable=False),
        Column("correlation_id", String(255), nullable=False),
        Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("body", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        Index(
            "outbox_unpublished",
            "position",
            postgresql_where=text("published_at IS NULL"),
        ),
    )
    inbox = Table(
        "inbox",
        metadata,
        Column("consumer", String(255), nullable=False),
        Column("message_id", String(255), nullable=False),
        Column("message_type", Text, nullable=False),
        Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("consumer", "message_id"),
    )
    return outbox, inbox
