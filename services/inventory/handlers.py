"""One function per queue of the inventory service, each taking a batch of messages (see
services.order.handlers).

Each takes its sagas' locks first, so that a cancellation and a late event of the same
saga, handled at the same moment in two processes, run one after the other.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial
from typing import Any

from contracts import (
    ORDER,
    Event,
    Faults,
    InventoryReserveFailed,
    OrderCancelled,
    OrderSucceeded,
    PaymentDebited,
)
from saga_log.runtime import (
    Batch,
    Received,
    UnitOfWork,
    mark_cancelled,
    mark_succeeded,
    one_by_one,
    split_cancelled,
    succeeded,
)
from services.inventory import domain, store
from services.inventory.tables import cancelled_sagas, succeeded_sagas

log = logging.getLogger(__name__)


async def reserve_inventory(
    uow: UnitOfWork, batch: Batch[PaymentDebited], *, faults: Faults
) -> None:
    """ReserveInventory: reserve each order's items, in three statements whatever the
    batch's size. For a cancelled saga nothing is reserved, and the late debit is answered
    so that it gets refunded."""
    live, late = await split_cancelled(
        uow,
        cancelled_sagas,
        batch,
        saga_type=ORDER.name,
        late="PaymentDebited after the saga was cancelled: not reserved",
    )
    for received in late:
        uow.publish(domain.refused_late(received.saga_id, causation_id=received.message_id))
    written = []
    for received in live:
        reservation, outcome = domain.reserve(
            received.message,
            causation_id=received.message_id,
            now=datetime.now(UTC),
            faults=faults,
        )
        written.append(reservation)
        uow.publish(outcome)
    await store.write(uow, *written)


async def release_inventory(
    uow: UnitOfWork, batch: Batch[InventoryReserveFailed], *, faults: Faults
) -> None:
    """ReleaseInventory, the compensation of ReserveInventory: release the stored Reserve."""
    await one_by_one(uow, batch, partial(_release_reserve, faults=faults))


async def _release_reserve(
    uow: UnitOfWork, received: Received[InventoryReserveFailed], *, faults: Faults
) -> None:
    await uow.lock_saga(received.saga_id)
    if await succeeded(uow, succeeded_sagas, received, saga_type=ORDER.name, undoing="Reserve"):
        return
    _, outcome = await _release(uow, received, received.message.error, faults)
    uow.publish(outcome)


async def cancel_reservation(uow: UnitOfWork, batch: Batch[OrderCancelled]) -> None:
    """The saga was cancelled: release its Reserve if there is one, reserve nothing later."""
    await one_by_one(uow, batch, _cancel_reservation)


async def _cancel_reservation(uow: UnitOfWork, received: Received[OrderCancelled]) -> None:
    event = received.message
    await uow.lock_saga(received.saga_id)
    if await succeeded(uow, succeeded_sagas, received, saga_type=ORDER.name, undoing="Reserve"):
        return
    await mark_cancelled(
        uow, cancelled_sagas, saga_type=ORDER.name, saga_id=event.order_id, reason=event.reason
    )
    cause = f"OrderCancelled: {event.reason}"
    released, outcome = await _release(uow, received, cause, domain.NO_FAULTS)
    if released is not None:
        uow.publish(outcome)


async def order_succeeded(uow: UnitOfWork, batch: Batch[OrderSucceeded]) -> None:
    """The order saga succeeded: nothing releases its Reserve after this."""
    ids = [received.saga_id for received in batch]
    await mark_succeeded(uow, succeeded_sagas, saga_type=ORDER.name, saga_ids=ids)


async def _release(
    uow: UnitOfWork, received: Received[Any], cause: str, faults: Faults
) -> tuple[domain.InventoryTransaction | None, Event]:
    """Release the saga's stored Reserve (call with the saga's lock held); returns the Release
    written (None if there was no Reserve) and the outcome to publish."""
    order_id = received.saga_id
    released, outcome = domain.release(
        await store.reserve_of(uow, order_id),
        order_id=order_id,
        cause=cause,
        causation_id=received.message_id,
        now=datetime.now(UTC),
        faults=faults,
    )
    if released is not None:
        await store.write(uow, released)
    return released, outcome
