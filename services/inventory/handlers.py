"""One function per message the inventory service reacts to (see services.order.handlers)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from contracts import InventoryReserveFailed, PaymentDebited
from saga_log import Faults, UnitOfWork
from services.inventory import domain
from services.inventory.tables import inventory


async def reserve_inventory(
    uow: UnitOfWork, event: PaymentDebited, message_id: str, *, faults: Faults
) -> None:
    """ReserveInventory: reserve the order's items."""
    reservation, outcome = domain.reserve(event, now=datetime.now(UTC), faults=faults)
    await _write(uow, reservation)
    uow.publish(outcome)


async def release_inventory(
    uow: UnitOfWork, event: InventoryReserveFailed, message_id: str, *, faults: Faults
) -> None:
    """ReleaseInventory, the compensation of ReserveInventory: release the stored Reserve."""
    row = (
        await uow.connection.execute(
            select(inventory).where(
                inventory.c.order_id == event.order_id,
                inventory.c.transaction_type == domain.RESERVE,
            )
        )
    ).first()
    stored = domain.InventoryTransaction(**row._mapping) if row is not None else None
    released, outcome = domain.release(
        stored,
        order_id=event.order_id,
        cause=event.error,
        causation_id=message_id,
        now=datetime.now(UTC),
        faults=faults,
    )
    if released is not None:
        await _write(uow, released)
    uow.publish(outcome)


async def _write(uow: UnitOfWork, row: domain.InventoryTransaction) -> None:
    # The transaction id is deterministic: a write repeated for any reason is a no-op.
    await uow.connection.execute(insert(inventory).values(**asdict(row)).on_conflict_do_nothing())
