"""The inventory service's database: the sample's `inventory` table, outbox and inbox."""

from sqlalchemy import Column, DateTime, Index, MetaData, String, Table
from sqlalchemy.dialects.postgresql import JSONB, UUID

from saga_log.runtime import add_cancellation_table, add_runtime_tables, add_succeeded_table

metadata = MetaData()

inventory = Table(
    "inventory",
    metadata,
    Column("transaction_id", UUID(as_uuid=True), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("items", JSONB, nullable=False),
    Column("transaction_type", String(16), nullable=False),
    Column("transaction_date", DateTime(timezone=True), nullable=False),
    Index("inventory_order", "order_id", "transaction_type"),
)

cancelled_sagas = add_cancellation_table(metadata)
succeeded_sagas = add_succeeded_table(metadata)

outbox, inbox = add_runtime_tables(metadata)
