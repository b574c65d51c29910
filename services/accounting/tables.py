"""The accounting service's database: the customers' account credits, the cancelled
sagas, and the runtime's outbox and inbox."""

from sqlalchemy import Column, DateTime, MetaData, Numeric, String, Table, func
from sqlalchemy.dialects.postgresql import UUID

from saga_log.runtime import add_cancellation_table, add_runtime_tables, add_succeeded_table

metadata = MetaData()

account_credits = Table(
    "account_credits",
    metadata,
    # Derived from the fare: a credit retried for any reason finds its row.
    Column("credit_id", UUID(as_uuid=True), primary_key=True),
    Column("fare_id", String(64), nullable=False, unique=True),
    Column("customer_id", String(64), nullable=False),
    Column("charge_id", String(64), nullable=False),
    Column("amount", Numeric(12, 2), nullable=False),
    Column("credited_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Set when the fare was cancelled after its credit: the credit no longer counts.
    Column("reversed_at", DateTime(timezone=True)),
)

cancelled_sagas = add_cancellation_table(metadata)
succeeded_sagas = add_succeeded_table(metadata)

outbox, inbox = add_runtime_tables(metadata)
