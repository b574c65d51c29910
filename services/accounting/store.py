"""The accounting service's SQL: each statement's rule in its docstring."""

from __future__ import annotations

from dataclasses import asdict, fields

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert

from saga_log.runtime import UnitOfWork
from services.accounting.domain import Credit
from services.accounting.tables import account_credits


async def write_credits(uow: UnitOfWork, *credits: Credit) -> None:
    """Write account credits. Their ids are derived from the fare: a credit repeated for
    any reason is a no-op."""
    if credits:
        await uow.connection.execute(
            insert(account_credits).on_conflict_do_nothing(), [asdict(c) for c in credits]
        )


async def reverse_credit(uow: UnitOfWork, fare_id: str) -> Credit | None:
    """Reverse the fare's credit if there is one not reversed yet: the credit reversed
    now, or None (nothing was credited, or it was reversed already)."""
    row = (
        await uow.connection.execute(
            update(account_credits)
            .where(account_credits.c.fare_id == fare_id, account_credits.c.reversed_at.is_(None))
            .values(reversed_at=func.now())
            .returning(*(account_credits.c[f.name] for f in fields(Credit)))
        )
    ).first()
    return Credit(**row._mapping) if row is not None else None
