"""The payment service's SQL, set-wise: each statement's rule in its docstring."""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert

from saga_log.runtime import UnitOfWork
from services.payment.domain import DEBIT, Payment
from services.payment.fares import CAPTURED, FareCharge
from services.payment.tables import fare_charges, payments


async def write_payments(uow: UnitOfWork, *written: Payment) -> None:
    """Write payment rows. Their transaction ids are derived from the saga and the kind:
    a write repeated for any reason is a no-op."""
    await uow.insert(payments, [asdict(row) for row in written])


async def debit_of(uow: UnitOfWork, order_id: str) -> Payment | None:
    """The saga's Debit, as this database has it (a refund undoes only that)."""
    row = (
        await uow.connection.execute(
            select(payments).where(
                payments.c.order_id == order_id, payments.c.payment_type == DEBIT
            )
        )
    ).first()
    return Payment(**row._mapping) if row is not None else None


async def write_charges(uow: UnitOfWork, *charges: FareCharge) -> None:
    """Record what the provider did with fares' cards. One row per fare: a charge retried
    for any reason finds its row and changes nothing."""
    if charges:
        await uow.connection.execute(
            insert(fare_charges).on_conflict_do_nothing(), [asdict(c) for c in charges]
        )


async def charge_of(uow: UnitOfWork, fare_id: str) -> FareCharge | None:
    """The fare's charge, as this database has it (a refund undoes only that)."""
    row = (
        await uow.connection.execute(
            select(*(fare_charges.c[f] for f in FareCharge.__dataclass_fields__)).where(
                fare_charges.c.fare_id == fare_id
            )
        )
    ).first()
    return FareCharge(**row._mapping) if row is not None else None


async def mark_refunded(uow: UnitOfWork, charge: FareCharge) -> bool:
    """Mark a captured charge refunded; False if it was not captured any more (refunded
    by someone else first: the guard on `captured` refunds a charge once)."""
    updated = await uow.connection.execute(
        update(fare_charges)
        .where(fare_charges.c.fare_id == charge.fare_id, fare_charges.c.status == CAPTURED)
        .values(status=charge.status, refund_id=charge.refund_id, updated_at=func.now())
        .returning(fare_charges.c.fare_id)
    )
    return updated.first() is not None
