"""The payment service's database: the sample's `payments` table, outbox and inbox."""

from sqlalchemy import Column, DateTime, Index, MetaData, Numeric, String, Table
from sqlalchemy.dialects.postgresql import UUID

from saga_log import add_runtime_tables
from saga_log.cancellation import add_cancellation_table

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

cancelled_sagas = add_cancellation_table(metadata)

outbox, inbox = add_runtime_tables(metadata)
