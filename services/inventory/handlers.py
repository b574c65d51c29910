"""One function per message the inventory service reacts to (see services.order.handlers).

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

from contracts import (
    Event,
    InventoryReleased,
    InventoryReserveFailed,
    PaymentDebited,
    SagaCancelled,
)
from saga_log import Faults, UnitOfWork
from saga_log.cancellation import mark_cancelled, split_cancelled
from services.inventory import domain
from services.inventory.tables import cancelled_sagas, inventory

log = logging.getLogger(__name__)


async def reserve_inventory(
    uow: UnitOfWork, event: PaymentDebited, message_id: str, *, faults: Faults
) -> None:
    """ReserveInventory: reserve the order's items. For a cancelled saga nothing is
    reserved, and the late debit is answered so that it gets refunded."""
    await reserve_inventories(uow, [(event, message_id, uow.delivery)], faults=faults)


async def reserve_inventories(
    uow: UnitOfWork, batch: Sequence[tuple[PaymentDebited, str, Any]], *, faults: Faults
) -> None:
    """`reserve_inventory` for a batch of sagas, in three statements whatever its size."""
    live, late = await split_cancelled(
        uow,
        cancelled_sagas,
        batch,
        late="PaymentDebited after the saga was cancelled: not reserved",
    )
    for event, message_id, _ in late:
        # Answered all the same, so that the late debit gets refunded.
        uow.publish(
            InventoryReleased.caused_by(
                message_id,
                producer=domain.SERVICE,
                order_id=event.order_id,
                transaction_id=None,
                cause="SagaCancelled",
            )
        )
    written = []
    for event, _, _ in live:
        reservation, outcome = domain.reserve(event, now=datetime.now(UTC), faults=faults)
        written.append(reservation)
        uow.publish(outcome)
    await _write(uow, *written)


async def release_inventory(
    uow: UnitOfWork, event: InventoryReserveFailed, message_id: str, *, faults: Faults
) -> None:
    """ReleaseInventory, the compensation of ReserveInventory: release the stored Reserve."""
    await uow.lock_saga(event.order_id)
    _, outcome = await _release(uow, event.order_id, event.error, message_id, faults)
    uow.publish(outcome)


async def cancel_reservation(uow: UnitOfWork, event: SagaCancelled, message_id: str) -> None:
    """The saga was cancelled: release its Reserve if there is one, and reserve nothing later."""
    await uow.lock_saga(event.order_id)
    await mark_cancelled(uow, cancelled_sagas, event.order_id, event.reason)
    released, outcome = await _release(
        uow, event.order_id, f"SagaCancelled: {event.reason}", message_id, domain.NO_FAULTS
    )
    if released is not None:
        uow.publish(outcome)


async def _release(
    uow: UnitOfWork, order_id: str, cause: str, causation_id: str, faults: Faults
) -> tuple[domain.InventoryTransaction | None, Event]:
    """Release the saga's stored Reserve (call with the saga's lock held); returns the Release
    written (None if there was no Reserve) and the outcome to publish."""
    released, outcome = domain.release(
        await _reserve_of(uow, order_id),
        order_id=order_id,
        cause=cause,
        causation_id=causation_id,
        now=datetime.now(UTC),
        faults=faults,
    )
    if released is not None:
        await _write(uow, released)
    return released, outcome


async def _reserve_of(uow: UnitOfWork, order_id: str) -> domain.InventoryTransaction | None:
    row = (
        await uow.connection.execute(
            select(inventory).where(
                inventory.c.order_id == order_id, inventory.c.transaction_type == domain.RESERVE
            )
        )
    ).first()
    return domain.InventoryTransaction(**row._mapping) if row is not None else None


async def _write(uow: UnitOfWork, *written: domain.InventoryTransaction) -> None:
    # The transaction id is deterministic: a write repeated for any reason is a no-op.
    if written:
        await uow.connection.execute(
            insert(inventory).on_conflict_do_nothing(), [asdict(row) for row in written]
        )
