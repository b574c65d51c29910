"""The fare service's SQL: each statement's rule in its docstring."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timedelta

from sqlalchemy import func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from saga_log.runtime import Overdue, UnitOfWork
from services.fare.domain import Fare, FareStatus, SagaOutcome
from services.fare.tables import fare_sagas, fares


async def insert_new_fares(uow: UnitOfWork, registered: Sequence[Fare]) -> set[str]:
    """Store the fares not stored yet and start their sagas; returns the ids stored now. A
    fareId seen before starts nothing (the primary key decides, no look-up)."""
    if not registered:
        return set()
    inserted = await uow.connection.execute(
        insert(fares).on_conflict_do_nothing().returning(fares.c.fare_id),
        [asdict(fare) for fare in registered],
    )
    new = {row[0] for row in inserted}
    if new:
        await uow.connection.execute(
            insert(fare_sagas),
            [{"fare_id": fare_id, "outcome": SagaOutcome.RUNNING} for fare_id in sorted(new)],
        )
    return new


async def fare(uow: UnitOfWork, fare_id: str) -> Fare | None:
    row = (await uow.connection.execute(select(fares).where(fares.c.fare_id == fare_id))).first()
    return Fare(**row._mapping) if row is not None else None


async def set_status(uow: UnitOfWork, fare_id: str, status: FareStatus) -> Fare | None:
    """Set the fare's status; returns the fare (None if there is no such fare)."""
    row = (
        await uow.connection.execute(
            update(fares)
            .where(fares.c.fare_id == fare_id)
            .values(fare_status=status)
            .returning(*fares.c)
        )
    ).first()
    return Fare(**row._mapping) if row is not None else None


async def record_charge(
    uow: UnitOfWork, fare_id: str, *, charge_token: str | None, charge_id: str | None
) -> None:
    """Remember the fare's charge (for the success notification), and that its saga
    progressed: the step timeout measures from `updated_at`."""
    values: dict[str, object] = {"updated_at": func.now()}
    if charge_id is not None:
        values |= {"charge_token": charge_token, "charge_id": charge_id}
    await uow.connection.execute(
        update(fare_sagas).where(fare_sagas.c.fare_id == fare_id).values(**values)
    )


async def end_saga(
    uow: UnitOfWork,
    fare_id: str,
    outcome: SagaOutcome,
    *,
    error: str | None = None,
    failed_compensation: str | None = None,
    charge: tuple[str, str] | None = None,
) -> tuple[datetime, str | None, str | None] | None:
    """End the fare's saga with `outcome` if it is running, keeping its `charge` (token,
    id) if given: (started_at, charge_token, charge_id), or None if it had ended (the
    guard on `running` ends a saga once)."""
    kept = {"charge_token": charge[0], "charge_id": charge[1]} if charge else {}
    row = (
        await uow.connection.execute(
            update(fare_sagas)
            .where(fare_sagas.c.fare_id == fare_id, fare_sagas.c.outcome == SagaOutcome.RUNNING)
            .values(
                outcome=outcome,
                error=error,
                failed_compensation=failed_compensation,
                updated_at=func.now(),
                **kept,
            )
            .returning(fare_sagas.c.started_at, fare_sagas.c.charge_token, fare_sagas.c.charge_id)
        )
    ).first()
    return (row.started_at, row.charge_token, row.charge_id) if row is not None else None


async def overdue_sagas(
    uow: UnitOfWork, now: datetime, step_timeout: timedelta, saga_deadline: timedelta, limit: int
) -> list[Overdue]:
    """Running sagas silent past the step timeout or older than the deadline, locked for
    this transaction (another replica skips them)."""
    rows = await uow.connection.execute(
        select(fare_sagas.c.fare_id, fare_sagas.c.started_at, fare_sagas.c.updated_at)
        .where(
            # Inline, not a parameter: only a literal matches the partial index's
            # predicate in the plan PostgreSQL caches.
            fare_sagas.c.outcome == literal(SagaOutcome.RUNNING.value, literal_execute=True),
            or_(
                fare_sagas.c.started_at < now - saga_deadline,
                fare_sagas.c.updated_at < now - step_timeout,
            ),
        )
        .order_by(fare_sagas.c.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [Overdue(row.fare_id, row.started_at, row.updated_at) for row in rows]


async def saga_outcome(uow: UnitOfWork, saga_id: str) -> str | None:
    """How this service's view holds the saga: running, succeeded, failed (None: unknown)."""
    outcome = await uow.connection.scalar(
        select(fare_sagas.c.outcome).where(fare_sagas.c.fare_id == saga_id)
    )
    return None if outcome is None else str(outcome)
