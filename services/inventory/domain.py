"""The inventory service's rules: ReserveInventory and its compensation ReleaseInventory
(a Release row copying the items of the stored Reserve). Pure: no I/O."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from contracts import (
    Event,
    Faults,
    InventoryReleased,
    InventoryReleaseFailed,
    InventoryReserved,
    InventoryReserveFailed,
    PaymentDebited,
    transaction_id,
)

#: A cancellation's compensation never fails on purpose: it is not one of the sample's steps.
NO_FAULTS = Faults()

SERVICE = "inventory"
RESERVE_INVENTORY = "ReserveInventory"
RELEASE_INVENTORY = "ReleaseInventory"
RESERVE = "Reserve"
RELEASE = "Release"


@dataclass(frozen=True)
class InventoryTransaction:
    """A row of the sample's `inventory` table."""

    transaction_id: uuid.UUID
    order_id: str
    items: list[str]
    transaction_type: str
    transaction_date: datetime


def reserve(
    payment: PaymentDebited, *, causation_id: str, now: datetime, faults: Faults
) -> tuple[InventoryTransaction, InventoryReserved | InventoryReserveFailed]:
    """ReserveInventory: write the Reserve listing the order's item ids; fail afterwards if
    a fault says so."""
    reservation = InventoryTransaction(
        transaction_id=transaction_id(payment.order_id, RESERVE),
        order_id=payment.order_id,
        items=[item.item_id for item in payment.items],
        transaction_type=RESERVE,
        transaction_date=now,
    )
    event: InventoryReserved | InventoryReserveFailed
    error = faults.error(RESERVE_INVENTORY, payment.order_id)
    if error is not None:
        event = InventoryReserveFailed.caused_by(
            causation_id,
            producer=SERVICE,
            order_id=payment.order_id,
            transaction_id=reservation.transaction_id,
            error=error,
        )
    else:
        event = InventoryReserved.caused_by(
            causation_id,
            producer=SERVICE,
            order_id=payment.order_id,
            transaction_id=reservation.transaction_id,
            items=reservation.items,
        )
    return reservation, event


def release(
    stored_reserve: InventoryTransaction | None,
    *,
    order_id: str,
    cause: str,
    causation_id: str,
    now: datetime,
    faults: Faults,
) -> tuple[InventoryTransaction | None, Event]:
    """ReleaseInventory: write a Release copying the stored Reserve's items; fail afterwards
    if a fault says so. With no Reserve there is nothing to release."""
    if stored_reserve is None:
        return None, InventoryReleased.caused_by(
            causation_id, producer=SERVICE, order_id=order_id, transaction_id=None, cause=cause
        )
    released = replace(
        stored_reserve,
        transaction_id=transaction_id(order_id, RELEASE),
        transaction_type=RELEASE,
        transaction_date=now,
    )
    error = faults.error(RELEASE_INVENTORY, order_id)
    if error is not None:
        return released, InventoryReleaseFailed.caused_by(
            causation_id,
            producer=SERVICE,
            order_id=order_id,
            step=RELEASE_INVENTORY,
            error=error,
            cause=cause,
            transaction_id=str(released.transaction_id),
        )
    return released, InventoryReleased.caused_by(
        causation_id,
        producer=SERVICE,
        order_id=order_id,
        transaction_id=released.transaction_id,
        cause=cause,
    )


def refused_late(order_id: str, *, causation_id: str) -> InventoryReleased:
    """A debit arrived after its saga was cancelled: nothing is reserved, and the answer
    says so, so that the debit gets refunded."""
    return InventoryReleased.caused_by(
        causation_id,
        producer=SERVICE,
        order_id=order_id,
        transaction_id=None,
        cause="OrderCancelled",
    )
