"""The payment service's database: the order sample's `payments` table, the fare lab's
charges (`fare_charges`), the cancelled sagas, outbox and inbox."""

from sqlalchemy import Column, DateTime, Index, MetaData, Numeric, String, Table, func
from sqlalchemy.dialects.postgresql import UUID

from saga_log.runtime import add_cancellation_table, add_runtime_tables, add_succeeded_table

metadata = MetaData()

payments = Table(
    "payments",
    metadata,
    Column("transaction_id", UUID(as_uuid=True), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("merchant_id", String(64), nullable=False),
    Column("payment_amount", Numeric(14, 2), nullable=False),
    Column("payment_type", String(16), nullable=False),
    Column("transaction_date", DateTime(timezone=True), nullable=False),
    Index("payments_order", "order_id", "payment_type"),
)

# One row per fare: what the provider did with its card (never the card itself).
fare_charges = Table(
    "fare_charges",
    metadata,
    Column("fare_id", String(64), primary_key=True),
    Column("customer_id", String(64), nullable=False),
    Column("amount", Numeric(12, 2), nullable=False),
    Column("charge_token", String(64)),
    Column("charge_id", String(64)),
    Column("refund_id", String(64)),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

cancelled_sagas = add_cancellation_table(metadata)
succeeded_sagas = add_succeeded_table(metadata)

outbox, inbox = add_runtime_tables(metadata)
