"""The order service's database: the sample's `orders` table, what it knows of each saga,
and the runtime's outbox and inbox."""

from sqlalchemy import Column, DateTime, Index, MetaData, String, Table, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB

from saga_log.runtime import add_runtime_tables
from services.order.domain import SagaOutcome

metadata = MetaData()

orders = Table(
    "orders",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("order_date", DateTime(timezone=True), nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("order_status", String(32), nullable=False),
    Column("items", JSONB, nullable=False),
)

# Kept apart from `orders` so that table stays the sample's own.
order_sagas = Table(
    "order_sagas",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("outcome", String(32), nullable=False),
    Column("cause", Text),
    Column("failed_compensation", Text),
    Column("compensation_error", Text),
    Column("payment_transactions", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("inventory_transactions", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The deadline watch reads the running sagas only, oldest first: without it, it read
    # every saga ever run, every second.
    Index(
        "order_sagas_running",
        "updated_at",
        postgresql_where=text(f"outcome = '{SagaOutcome.RUNNING}'"),
    ),
)

outbox, inbox = add_runtime_tables(metadata)
