"""One function per message the payment service reacts to (see services.order.handlers)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from contracts import InventoryReleased, OrderCreated, PaymentDebitFailed
from saga_log import Faults, UnitOfWork
from services.payment import domain
from services.payment.tables import payments


async def debit_payment(
    uow: UnitOfWork, event: OrderCreated, message_id: str, *, faults: Faults
) -> None:
    """ProcessPayment: debit the order's total."""
    payment, outcome = domain.debit(event, now=datetime.now(UTC), faults=faults)
    await _write(uow, payment)
    uow.publish(outcome)


async def refund_payment(
    uow: UnitOfWork,
    event: PaymentDebitFailed | InventoryReleased,
    message_id: str,
    *,
    faults: Faults,
) -> None:
    """ProcessRefund, the compensation of ProcessPayment: credit back the stored Debit."""
    cause = event.error if isinstance(event, PaymentDebitFailed) else event.cause
    row = (
        await uow.connection.execute(
            select(payments).where(
                payments.c.order_id == event.order_id, payments.c.payment_type == domain.DEBIT
            )
        )
    ).first()
    stored = domain.Payment(**row._mapping) if row is not None else None
    credit, outcome = domain.refund(
        stored,
        order_id=event.order_id,
        cause=cause,
        causation_id=message_id,
        now=datetime.now(UTC),
        faults=faults,
    )
    if credit is not None:
        await _write(uow, credit)
    uow.publish(outcome)


async def _write(uow: UnitOfWork, payment: domain.Payment) -> None:
    # The transaction id is deterministic: a write repeated for any reason is a no-op.
    await uow.connection.execute(
        insert(payments).values(**asdict(payment)).on_conflict_do_nothing()
    )
