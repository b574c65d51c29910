"""One function per message the payment service reacts to (see services.order.handlers).

Each takes the saga's lock first, so that a cancellation and a late event of the same saga,
handled at the same moment in two processes, run one after the other.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from contracts import Event, InventoryReleased, OrderCreated, PaymentDebitFailed, SagaCancelled
from saga_log import Faults, UnitOfWork
from saga_log.cancellation import mark_cancelled, split_cancelled
from services.payment import domain
from services.payment.tables import cancelled_sagas, payments

log = logging.getLogger(__name__)


async def debit_payment(
    uow: UnitOfWork, event: OrderCreated, message_id: str, *, faults: Faults
) -> None:
    """ProcessPayment: debit the order's total (never for a cancelled saga)."""
    await debit_payments(uow, [(event, message_id, uow.delivery)], faults=faults)


async def debit_payments(
    uow: UnitOfWork, batch: Sequence[tuple[OrderCreated, str, Any]], *, faults: Faults
) -> None:
    """`debit_payment` for a batch of sagas, in three statements whatever its size."""
    live, _ = await split_cancelled(
        uow, cancelled_sagas, batch, late="OrderCreated after the saga was cancelled: not debited"
    )
    written = []
    for event, _, _ in live:
        payment, outcome = domain.debit(event, now=datetime.now(UTC), faults=faults)
        written.append(payment)
        uow.publish(outcome)
    await _write(uow, *written)


async def refund_payment(
    uow: UnitOfWork,
    event: PaymentDebitFailed | InventoryReleased,
    message_id: str,
    *,
    faults: Faults,
) -> None:
    """ProcessRefund, the compensation of ProcessPayment: credit back the stored Debit."""
    await uow.lock_saga(event.order_id)
    cause = event.error if isinstance(event, PaymentDebitFailed) else event.cause
    _, outcome = await _refund(uow, event.order_id, cause, message_id, faults)
    uow.publish(outcome)


async def cancel_payment(uow: UnitOfWork, event: SagaCancelled, message_id: str) -> None:
    """The saga was cancelled: refund its Debit if there is one, and apply no later Debit."""
    await uow.lock_saga(event.order_id)
    await mark_cancelled(uow, cancelled_sagas, event.order_id, event.reason)
    credit, outcome = await _refund(
        uow, event.order_id, f"SagaCancelled: {event.reason}", message_id, domain.NO_FAULTS
    )
    if credit is not None:
        uow.publish(outcome)


async def _refund(
    uow: UnitOfWork, order_id: str, cause: str, causation_id: str, faults: Faults
) -> tuple[domain.Payment | None, Event]:
    """Credit back the saga's stored Debit (call with the saga's lock held); returns the Credit
    written (None if there was no Debit) and the outcome to publish."""
    credit, outcome = domain.refund(
        await _debit_of(uow, order_id),
        order_id=order_id,
        cause=cause,
        causation_id=causation_id,
        now=datetime.now(UTC),
        faults=faults,
    )
    if credit is not None:
        await _write(uow, credit)
    return credit, outcome


async def _debit_of(uow: UnitOfWork, order_id: str) -> domain.Payment | None:
    row = (
        await uow.connection.execute(
            select(payments).where(
                payments.c.order_id == order_id, payments.c.payment_type == domain.DEBIT
            )
        )
    ).first()
    return domain.Payment(**row._mapping) if row is not None else None


async def _write(uow: UnitOfWork, *written: domain.Payment) -> None:
    # The transaction id is deterministic: a write repeated for any reason is a no-op.
    if written:
        await uow.connection.execute(
            insert(payments).on_conflict_do_nothing(), [asdict(payment) for payment in written]
        )
