"""One function per queue of the order service, each taking a batch of messages (a single
delivery is a batch of one). Each runs inside the delivery's unit of work and publishes
only through it (the outbox); the delivery commits."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial
from typing import Any

from contracts import (
    Event,
    Faults,
    InventoryReleased,
    InventoryReleaseFailed,
    InventoryReserved,
    InventoryReserveFailed,
    OrderCreateFailed,
    OrderStatusUpdateFailed,
    PaymentDebited,
    PaymentDebitFailed,
    PaymentRefunded,
    PaymentRefundFailed,
    PlaceOrder,
)
from saga_log.runtime import Batch, Received, UnitOfWork, metrics, one_by_one, one_per_saga
from services.order import domain, store
from services.order.domain import SagaOutcome

log = logging.getLogger(__name__)

CompensationFailed = InventoryReleaseFailed | PaymentRefundFailed | OrderStatusUpdateFailed
Concluding = InventoryReserved | CompensationFailed
Transaction = (
    PaymentDebited
    | PaymentDebitFailed
    | PaymentRefunded
    | InventoryReserved
    | InventoryReserveFailed
    | InventoryReleased
    | CompensationFailed
)

#: Where each event's transaction is remembered (column, kind), for GET /orders.
KINDS: dict[type[Any], tuple[str, str]] = {
    PaymentDebited: ("payment_transactions", "Debit"),
    PaymentDebitFailed: ("payment_transactions", "Debit"),
    PaymentRefunded: ("payment_transactions", "Credit"),
    PaymentRefundFailed: ("payment_transactions", "Credit"),
    InventoryReserved: ("inventory_transactions", "Reserve"),
    InventoryReserveFailed: ("inventory_transactions", "Reserve"),
    InventoryReleased: ("inventory_transactions", "Release"),
    InventoryReleaseFailed: ("inventory_transactions", "Release"),
}


async def process_order(uow: UnitOfWork, batch: Batch[PlaceOrder], *, faults: Faults) -> None:
    """ProcessOrder: store each order as New and start its saga; an order_id seen before
    starts nothing. Two statements whatever the batch's size."""
    placed: dict[str, tuple[domain.Order, Event]] = {}
    for received in batch:
        command = received.message
        if command.order_id not in placed:
            placed[command.order_id] = domain.process_order(
                command, causation_id=received.message_id, faults=faults
            )
    new = await store.insert_new_orders(uow, [order for order, _ in placed.values()])
    for order_id, (_, event) in placed.items():
        if order_id in new:
            uow.publish(event)
        else:
            log.info("order already placed; no second saga", extra={"order_id": order_id})


async def update_order_status(
    uow: UnitOfWork, batch: Batch[OrderCreateFailed | PaymentRefunded], *, faults: Faults
) -> None:
    """UpdateOrderStatus, the compensation of ProcessOrder: set the order Pending, then end
    the saga as failed (or report the compensation's own failure)."""
    await one_by_one(uow, batch, partial(_update_order_status, faults=faults))


async def _update_order_status(
    uow: UnitOfWork, received: Received[OrderCreateFailed | PaymentRefunded], *, faults: Faults
) -> None:
    event, message_id = received.message, received.message_id
    await uow.lock_saga(received.saga_id)
    if await store.saga_outcome(uow, event.order_id) == SagaOutcome.SUCCEEDED:
        log.warning(
            "compensation for a saga that succeeded: the order stays as it is",
            extra={"order_id": event.order_id, "message_id": message_id},
        )
        return
    cause = event.error if isinstance(event, OrderCreateFailed) else event.cause
    if isinstance(event, PaymentRefunded):
        await _record(uow, [event])
    if not await store.set_pending(uow, [event.order_id]):
        log.warning("compensation for an unknown order ignored", extra={"order_id": event.order_id})
        return
    failure = domain.update_order_status(
        event.order_id, cause=cause, causation_id=message_id, faults=faults
    )
    if failure is not None:
        uow.publish(failure)
    elif not await _fail(uow, event.order_id, causation_id=message_id, cause=cause):
        uow.publish(domain.status_updated(event.order_id, causation_id=message_id))


async def conclude_saga(uow: UnitOfWork, batch: Batch[Concluding]) -> None:
    """End each saga: succeeded once its inventory is reserved, failed once a compensation
    has failed (the chain stops there). Only the first conclusion publishes; the successes
    take two statements, whatever their number."""
    if not one_per_saga(batch):
        # One saga's messages one after the other: whichever concludes it first wins.
        await one_by_one(uow, batch, lambda uow, received: conclude_saga(uow, [received]))
        return
    await _record(uow, [received.message for received in batch])
    reserved: dict[str, str] = {}
    for received in batch:
        event = received.message
        if isinstance(event, InventoryReserved):
            reserved[event.order_id] = received.message_id
        else:
            await _fail(
                uow,
                event.order_id,
                causation_id=received.message_id,
                cause=event.cause,
                failed_compensation=event.step,
                compensation_error=event.error,
            )
    now = datetime.now(UTC)
    seconds = metrics.SAGA_SECONDS.labels("order", "order", SagaOutcome.SUCCEEDED)
    for order_id, started_at, order_status in await store.succeed_sagas(uow, list(reserved)):
        seconds.observe((now - started_at).total_seconds())
        uow.publish(
            domain.saga_succeeded(
                order_id, order_status=order_status, causation_id=reserved[order_id]
            )
        )


async def record_transaction(
    uow: UnitOfWork,
    batch: Batch[PaymentDebited | PaymentDebitFailed | InventoryReserveFailed | InventoryReleased],
) -> None:
    """Remember the payment or inventory transaction each event reports, for GET /orders,
    in one statement per kind of transaction."""
    await _record(uow, [received.message for received in batch])


async def _record(uow: UnitOfWork, events: list[Transaction]) -> None:
    """Remember the transactions `events` report, and that their sagas progressed."""
    progress: list[str] = []
    kinds: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for event in events:
        kind = KINDS.get(type(event))
        if kind is not None and event.transaction_id is not None:
            kinds.setdefault(kind, []).append((event.order_id, str(event.transaction_id)))
        else:
            progress.append(event.order_id)
    await store.touch_sagas(uow, progress)
    for (column, name), pairs in kinds.items():
        await store.record_transactions(uow, column, name, pairs)


async def _fail(
    uow: UnitOfWork,
    order_id: str,
    *,
    causation_id: str,
    cause: str | None,
    failed_compensation: str | None = None,
    compensation_error: str | None = None,
) -> bool:
    """End the saga as failed and publish OrderFailed; False if it had already ended."""
    ended = await store.fail_saga(
        uow,
        order_id,
        cause=cause,
        failed_compensation=failed_compensation,
        compensation_error=compensation_error,
    )
    if ended is None:
        log.info("saga already concluded", extra={"order_id": order_id})
        return False
    started_at, order_status = ended
    metrics.SAGA_SECONDS.labels("order", "order", SagaOutcome.FAILED).observe(
        (datetime.now(UTC) - started_at).total_seconds()
    )
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
