"""The fare service's database: the lab's fares (card's last four digits only), what it
knows of each fare's saga, and the runtime's outbox and inbox."""

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    func,
    text,
)

from saga_log.runtime import add_runtime_tables
from services.fare.domain import SagaOutcome

metadata = MetaData()

fares = Table(
    "fares",
    metadata,
    Column("fare_id", String(64), primary_key=True),
    Column("customer_id", String(64), nullable=False),
    Column("fare_amount", Numeric(12, 2), nullable=False),
    Column("card_last4", String(4)),
    # completed or failed; not set while the saga runs, nor when a compensation failed.
    Column("fare_status", String(16)),
)

# Kept apart from `fares` so that table stays the lab's own.
fare_sagas = Table(
    "fare_sagas",
    metadata,
    Column("fare_id", String(64), primary_key=True),
    Column("outcome", String(32), nullable=False),
    Column("error", Text),
    Column("failed_compensation", Text),
    Column("charge_token", String(64)),
    Column("charge_id", String(64)),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The deadline watch reads the running sagas only, oldest first: without it, it read
    # every saga ever run, every second.
    Index(
        "fare_sagas_running",
        "updated_at",
        postgresql_where=text(f"outcome = '{SagaOutcome.RUNNING}'"),
    ),
)

outbox, inbox = add_runtime_tables(metadata)
