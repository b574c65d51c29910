"""One function per message the order service reacts to. Each runs inside the delivery's
unit of work and publishes only through it (the outbox); the delivery commits."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import TextClause, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, TEXT, insert

from contracts import (
    Event,
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
from saga_log import Faults, UnitOfWork, one_per_saga
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
    await process_orders(uow, [(command, message_id, uow.delivery)], faults=faults)


async def process_orders(
    uow: UnitOfWork, batch: Sequence[tuple[PlaceOrder, str, Any]], *, faults: Faults
) -> None:
    """`process_order` for a batch, in two statements whatever its size."""
    placed: dict[str, tuple[domain.Order, Event]] = {}
    for command, message_id, _ in batch:
        if command.order_id in placed:
            log.info("order already placed; no second saga", extra={"order_id": command.order_id})
            continue
        placed[command.order_id] = domain.process_order(
            command, causation_id=message_id, faults=faults
        )
    inserted = await uow.connection.execute(
        insert(orders).on_conflict_do_nothing().returning(orders.c.order_id),
        [asdict(order) for order, _ in placed.values()],
    )
    new = {row[0] for row in inserted}
    for order_id, (_, event) in placed.items():
        if order_id in new:
            uow.publish(event)
        else:
            log.info("order already placed; no second saga", extra={"order_id": order_id})
    if new:
        await uow.connection.execute(
            insert(order_sagas),
            [{"order_id": order_id, "outcome": SagaOutcome.RUNNING} for order_id in sorted(new)],
        )


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
    await conclude_sagas(uow, [(event, message_id, uow.delivery)])


async def conclude_sagas(
    uow: UnitOfWork,
    batch: Sequence[tuple[InventoryReserved | SagaCompensationFailed, str, Any]],
) -> None:
    """`conclude_saga` for a batch: the successes in two statements, whatever their number."""
    if not one_per_saga(batch):
        # One saga's messages one after the other: whichever concludes it first wins.
        for item in batch:
            await conclude_sagas(uow, [item])
        return
    await _record(uow, *(event for event, _, _ in batch))
    reserved: dict[str, str] = {}
    for event, message_id, _ in batch:
        if isinstance(event, InventoryReserved):
            reserved[event.order_id] = message_id
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
    if not reserved:
        return
    concluded = await uow.connection.execute(_SUCCEED_SAGAS, {"ids": sorted(reserved)})
    now = datetime.now(UTC)
    seconds = SAGA_SECONDS.labels("order", SagaOutcome.SUCCEEDED)
    for order_id, started_at, order_status in concluded:
        seconds.observe((now - started_at).total_seconds())
        uow.publish(
            domain.saga_succeeded(
                order_id, order_status=str(order_status), causation_id=reserved[order_id]
            )
        )


async def record_transaction(
    uow: UnitOfWork,
    event: PaymentDebited | PaymentDebitFailed | InventoryReserveFailed | InventoryReleased,
    message_id: str,
) -> None:
    """Remember the payment or inventory transaction an event reports, for GET /orders."""
    await _record(uow, event)


async def record_transactions(
    uow: UnitOfWork,
    batch: Sequence[
        tuple[
            PaymentDebited | PaymentDebitFailed | InventoryReserveFailed | InventoryReleased,
            str,
            Any,
        ]
    ],
) -> None:
    """`record_transaction` for a batch, in one statement per kind of transaction."""
    await _record(uow, *(event for event, _, _ in batch))


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


async def _record(uow: UnitOfWork, *events: TransactionEvent) -> None:
    """Remember the transactions `events` report, and that their sagas progressed (the step
    timeout measures from `updated_at`): one UPDATE per kind of transaction. One saga twice
    is harmless: its transaction id is derived from the saga and the kind."""
    progress: list[str] = []
    kinds: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for event in events:
        kind = _kind_of(event)
        if kind is not None and event.transaction_id is not None:
            kinds.setdefault(kind, []).append((event.order_id, str(event.transaction_id)))
        else:
            progress.append(event.order_id)
    if progress:
        await uow.connection.execute(_TOUCH_SAGAS, {"ids": progress})
    for (column, name), pairs in kinds.items():
        order_ids, transaction_ids = zip(*pairs, strict=True)
        await uow.connection.execute(
            _record_statement(column),
            {"name": name, "ids": list(order_ids), "transactions": list(transaction_ids)},
        )


def _kind_of(event: TransactionEvent) -> tuple[str, str] | None:
    if isinstance(event, SagaCompensationFailed):
        return _FAILED_STEP_KINDS.get(event.step)
    return _KINDS[type(event)]


_IDS = bindparam("ids", type_=ARRAY(TEXT))

_TOUCH_SAGAS = text(
    "UPDATE order_sagas SET updated_at = now() WHERE order_id = ANY(:ids)"
).bindparams(_IDS)

_SUCCEED_SAGAS = text(
    f"""
    UPDATE order_sagas SET outcome = '{SagaOutcome.SUCCEEDED}', cause = NULL,
        failed_compensation = NULL, compensation_error = NULL, updated_at = now()
    WHERE order_id = ANY(:ids) AND outcome = '{SagaOutcome.RUNNING}'
    RETURNING order_id, started_at,
        (SELECT order_status FROM orders WHERE orders.order_id = order_sagas.order_id)
    """
).bindparams(_IDS)


@functools.cache
def _record_statement(column: str) -> TextClause:
    # `column` is one of two names from _KINDS, never input.
    return text(
        f"""
        UPDATE order_sagas
        SET updated_at = now(), {column} = {column} || jsonb_build_object(:name, t.transaction_id)
        FROM unnest(:ids, :transactions) AS t(order_id, transaction_id)
        WHERE order_sagas.order_id = t.order_id
        """
    ).bindparams(_IDS, bindparam("transactions", type_=ARRAY(TEXT)), bindparam("name", type_=TEXT))


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
