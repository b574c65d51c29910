"""One function per message the order service reacts to. Each runs inside the delivery's
unit of work and publishes only through it (the outbox); the delivery commits."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, literal, select, update
from sqlalchemy.dialects.postgresql import insert

from contracts import (
    InventoryReleased,
    InventoryReserved,
    InventoryReserveFailed,
    OrderCreateFailed,
    OrderStatusUpdated,
    PaymentDebited,
    PaymentDebitFailed,
    PaymentRefunded,
    PlaceOrder,
    SagaCompensationFailed,
    Step,
)
from saga_log import Faults, UnitOfWork
from saga_log.metrics import SAGA_SECONDS
from services.order import domain
from services.order.domain import OrderStatus, SagaOutcome
from services.order.tables import order_sagas, orders

log = logging.getLogger(__name__)

TransactionEvent = (
    PaymentDebited
    | PaymentDebitFailed
    | PaymentRefunded
    | InventoryReserved
    | InventoryReserveFailed
    | InventoryReleased
    | SagaCompensationFailed
)


async def process_order(
    uow: UnitOfWork, command: PlaceOrder, message_id: str, *, faults: Faults
) -> None:
    """ProcessOrder: store the order as New and start its saga; an order_id seen before
    starts nothing."""
    order, event = domain.process_order(command, causation_id=message_id, faults=faults)
    inserted = await uow.connection.execute(
        insert(orders).values(**asdict(order)).on_conflict_do_nothing().returning(orders.c.order_id)
    )
    if inserted.first() is None:
        log.info("order already placed; no second saga", extra={"order_id": order.order_id})
        return
    await uow.connection.execute(
        insert(order_sagas).values(order_id=order.order_id, outcome=SagaOutcome.RUNNING)
    )
    uow.publish(event)


async def update_order_status(
    uow: UnitOfWork,
    event: OrderCreateFailed | PaymentRefunded,
    message_id: str,
    *,
    faults: Faults,
) -> None:
    """UpdateOrderStatus, the compensation of ProcessOrder: set the order Pending, then end
    the saga as failed (or report the compensation's own failure)."""
    cause = event.error if isinstance(event, OrderCreateFailed) else event.cause
    if isinstance(event, PaymentRefunded):
        await _record(uow, event)
    updated = await uow.connection.execute(
        update(orders)
        .where(orders.c.order_id == event.order_id)
        .values(order_status=OrderStatus.PENDING)
        .returning(orders.c.order_id)
    )
    if updated.first() is None:
        log.warning("compensation for an unknown order ignored", extra={"order_id": event.order_id})
        return
    failure = domain.update_order_status(
        event.order_id, cause=cause, causation_id=message_id, faults=faults
    )
    if failure is not None:
        uow.publish(failure)
        return
    concluded = await _conclude(
        uow, event.order_id, SagaOutcome.FAILED, causation_id=message_id, cause=cause
    )
    if not concluded:
        uow.publish(
            OrderStatusUpdated.caused_by(
                message_id,
                producer=domain.SERVICE,
                order_id=event.order_id,
                order_status=OrderStatus.PENDING,
            )
        )


async def conclude_saga(
    uow: UnitOfWork, event: InventoryReserved | SagaCompensationFailed, message_id: str
) -> None:
    """End the saga: succeeded once the inventory is reserved, failed once a compensation
    has failed (the chain stops there). Only the first conclusion publishes."""
    await _record(uow, event)
    if isinstance(event, InventoryReserved):
        await _conclude(uow, event.order_id, SagaOutcome.SUCCEEDED, causation_id=message_id)
    else:
        await _conclude(
            uow,
            event.order_id,
            SagaOutcome.FAILED,
            causation_id=message_id,
            cause=event.cause,
            failed_compensation=event.step,
            compensation_error=event.error,
        )


async def record_transaction(
    uow: UnitOfWork,
    event: PaymentDebited | PaymentDebitFailed | InventoryReserveFailed | InventoryReleased,
    message_id: str,
) -> None:
    """Remember the payment or inventory transaction an event reports, for GET /orders."""
    await _record(uow, event)


_KINDS: dict[type[Any], tuple[str, str]] = {
    PaymentDebited: ("payment_transactions", "Debit"),
    PaymentDebitFailed: ("payment_transactions", "Debit"),
    PaymentRefunded: ("payment_transactions", "Credit"),
    InventoryReserved: ("inventory_transactions", "Reserve"),
    InventoryReserveFailed: ("inventory_transactions", "Reserve"),
    InventoryReleased: ("inventory_transactions", "Release"),
}
_FAILED_STEP_KINDS: dict[str, tuple[str, str]] = {
    Step.PROCESS_REFUND: ("payment_transactions", "Credit"),
    Step.RELEASE_INVENTORY: ("inventory_transactions", "Release"),
}


async def _record(uow: UnitOfWork, event: TransactionEvent) -> None:
    # Every event is progress: `updated_at` is what the step timeout measures from.
    values: dict[str, Any] = {"updated_at": func.now()}
    if isinstance(event, SagaCompensationFailed):
        kind = _FAILED_STEP_KINDS.get(event.step)
    else:
        kind = _KINDS[type(event)]
    if kind is not None and event.transaction_id is not None:
        column, name = kind
        values[column] = order_sagas.c[column].op("||")(
            func.jsonb_build_object(literal(name), literal(str(event.transaction_id)))
        )
    await uow.connection.execute(
        update(order_sagas).where(order_sagas.c.order_id == event.order_id).values(values)
    )


async def _conclude(
    uow: UnitOfWork,
    order_id: str,
    outcome: SagaOutcome,
    *,
    causation_id: str,
    cause: str | None = None,
    failed_compensation: str | None = None,
    compensation_error: str | None = None,
) -> bool:
    """End the saga with `outcome` and publish its terminal event; False if it had ended."""
    # The guard on `running` makes the terminal event happen once per saga, however many
    # events race to conclude it.
    concluded = await uow.connection.execute(
        update(order_sagas)
        .where(order_sagas.c.order_id == order_id, order_sagas.c.outcome == SagaOutcome.RUNNING)
        .values(
            outcome=outcome,
            cause=cause,
            failed_compensation=failed_compensation,
            compensation_error=compensation_error,
            updated_at=func.now(),
        )
        .returning(order_sagas.c.started_at)
    )
    started_at = concluded.scalar()
    if started_at is None:
        log.info("saga already concluded", extra={"order_id": order_id, "outcome": outcome})
        return False
    order_status = str(
        await uow.connection.scalar(
            select(orders.c.order_status).where(orders.c.order_id == order_id)
        )
    )
    SAGA_SECONDS.labels("order", outcome).observe((datetime.now(UTC) - started_at).total_seconds())
    if outcome is SagaOutcome.SUCCEEDED:
        uow.publish(
            domain.saga_succeeded(order_id, order_status=order_status, causation_id=causation_id)
        )
    else:
        uow.publish(
            domain.saga_failed(
                order_id,
                order_status=order_status,
                cause=cause or "",
                causation_id=causation_id,
                failed_compensation=failed_compensation,
                compensation_error=compensation_error,
            )
        )
    return True
