"""The inventory service's SQL, set-wise: each statement's rule in its docstring."""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import select

from saga_log.runtime import UnitOfWork
from services.inventory.domain import RESERVE, InventoryTransaction
from services.inventory.tables import inventory


async def write(uow: UnitOfWork, *rows: InventoryTransaction) -> None:
    """Write inventory rows. Their transaction ids are derived from the saga and the kind:
    a write repeated for any reason is a no-op."""
    await uow.insert(inventory, [asdict(row) for row in rows])


async def reserve_of(uow: UnitOfWork, order_id: str) -> InventoryTransaction | None:
    """The saga's Reserve, as its own database has it (a compensation undoes only that)."""
    row = (
        await uow.connection.execute(
            select(inventory).where(
                inventory.c.order_id == order_id, inventory.c.transaction_type == RESERVE
            )
        )
    ).first()
    return InventoryTransaction(**row._mapping) if row is not None else None
