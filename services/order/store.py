"""The order service's SQL, set-wise: each statement takes many sagas at once and says the
rule it keeps in its docstring. Called by the handlers inside their unit of work."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY, TEXT

from saga_log.runtime import Overdue, UnitOfWork
from services.order.domain import Order, OrderStatus, SagaOutcome
from services.order.tables import order_sagas, orders

_IDS = bindparam("ids", type_=ARRAY(TEXT))


async def insert_new_orders(uow: UnitOfWork, placed: Sequence[Order]) -> set[str]:
    """Store the orders not stored yet and start their sagas; returns the ids stored now.
    An order_id seen before starts nothing (the primary key decides, no look-up)."""
    if not placed:
        return set()
    inserted = await uow.insert(orders, [asdict(order) for order in placed], returning="order_id")
    new = {row[0] for row in inserted}
    await uow.insert(
        order_sagas,
        [{"order_id": order_id, "outcome": SagaOutcome.RUNNING} for order_id in sorted(new)],
        skip_conflicts=False,
    )
    return new


async def set_pending(uow: UnitOfWork, order_ids: Iterable[str]) -> set[str]:
    """Set the orders Pending (UpdateOrderStatus); returns the ids of the orders that exist."""
    updated = await uow.connection.execute(
        update(orders)
        .where(orders.c.order_id == func.any(bindparam("ids", list(order_ids), type_=ARRAY(TEXT))))
        .values(order_status=OrderStatus.PENDING)
        .returning(orders.c.order_id)
    )
    return {row[0] for row in updated}


async def touch_sagas(uow: UnitOfWork, order_ids: Sequence[str]) -> None:
    """The sagas progressed: the step timeout measures from `updated_at`."""
    if order_ids:
        await uow.fetch(_TOUCH_SAGAS, list(order_ids))


async def record_transactions(
    uow: UnitOfWork, column: str, name: str, pairs: Sequence[tuple[str, str]]
) -> None:
    """Remember (order_id, transaction_id) of kind `name` in `column`, and that each saga
    progressed. One saga twice is harmless: its transaction id is derived from it."""
    order_ids, transaction_ids = zip(*pairs, strict=True)
    await uow.fetch(_record_statement(column), name, list(order_ids), list(transaction_ids))


async def succeed_sagas(
    uow: UnitOfWork, order_ids: Sequence[str]
) -> list[tuple[str, datetime, str]]:
    """End the running sagas among `order_ids` as succeeded: (order_id, started_at,
    order_status) of each one ended now. The guard on `running` ends a saga once, however
    many events race to conclude it."""
    if not order_ids:
        return []
    rows = await uow.fetch(_SUCCEED_SAGAS, sorted(order_ids))
    return [(str(order_id), started, str(status)) for order_id, started, status in rows]


async def fail_saga(
    uow: UnitOfWork,
    order_id: str,
    *,
    cause: str | None,
    failed_compensation: str | None = None,
    compensation_error: str | None = None,
) -> tuple[datetime, str] | None:
    """End the saga as failed if it is running: (started_at, order_status), or None if it
    had ended (the guard on `running` ends a saga once)."""
    concluded = await uow.connection.execute(
        update(order_sagas)
        .where(order_sagas.c.order_id == order_id, order_sagas.c.outcome == SagaOutcome.RUNNING)
        .values(
            outcome=SagaOutcome.FAILED,
            cause=cause,
            failed_compensation=failed_compensation,
            compensation_error=compensation_error,
            updated_at=func.now(),
        )
        .returning(order_sagas.c.started_at)
    )
    started_at = concluded.scalar()
    if started_at is None:
        return None
    status = await uow.connection.scalar(
        select(orders.c.order_status).where(orders.c.order_id == order_id)
    )
    return started_at, str(status)


async def overdue_sagas(
    uow: UnitOfWork, now: datetime, step_timeout: timedelta, saga_deadline: timedelta, limit: int
) -> list[Overdue]:
    """Running sagas silent past the step timeout or older than the deadline, locked for
    this transaction (another replica skips them)."""
    rows = await uow.connection.execute(
        select(order_sagas.c.order_id, order_sagas.c.started_at, order_sagas.c.updated_at)
        .where(
            # Inline, not a parameter: only a literal matches the partial index's
            # predicate in the plan PostgreSQL caches.
            order_sagas.c.outcome == literal(SagaOutcome.RUNNING.value, literal_execute=True),
            or_(
                order_sagas.c.started_at < now - saga_deadline,
                order_sagas.c.updated_at < now - step_timeout,
            ),
        )
        .order_by(order_sagas.c.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [Overdue(row.order_id, row.started_at, row.updated_at) for row in rows]


async def cancel_saga(uow: UnitOfWork, order_id: str, reason: str) -> None:
    """End a saga as failed by cancellation, its order Pending (call with its row locked)."""
    await uow.connection.execute(
        update(order_sagas)
        .where(order_sagas.c.order_id == order_id)
        .values(outcome=SagaOutcome.FAILED, cause=reason, updated_at=func.now())
    )
    await set_pending(uow, [order_id])


# The statements of every hop run straight on asyncpg (UnitOfWork.fetch): SQLAlchemy's
# layer cost more than their round trip.
_TOUCH_SAGAS = "UPDATE order_sagas SET updated_at = now() WHERE order_id = ANY($1::text[])"

_SUCCEED_SAGAS = f"""
    UPDATE order_sagas SET outcome = '{SagaOutcome.SUCCEEDED}', cause = NULL,
        failed_compensation = NULL, compensation_error = NULL, updated_at = now()
    WHERE order_id = ANY($1::text[]) AND outcome = '{SagaOutcome.RUNNING}'
    RETURNING order_id, started_at,
        (SELECT order_status FROM orders WHERE orders.order_id = order_sagas.order_id)
    """


@functools.cache
def _record_statement(column: str) -> str:
    # `column` is one of two names from the handlers' table of kinds, never input.
    return f"""
        UPDATE order_sagas
        SET updated_at = now(),
            {column} = {column} || jsonb_build_object($1::text, t.transaction_id)
        FROM unnest($2::text[], $3::text[]) AS t(order_id, transaction_id)
        WHERE order_sagas.order_id = t.order_id
        """


async def saga_outcome(uow: UnitOfWork, saga_id: str) -> str | None:
    """How this service's view holds the saga: running, succeeded, failed (None: unknown)."""
    outcome = await uow.connection.scalar(
        select(order_sagas.c.outcome).where(order_sagas.c.order_id == saga_id)
    )
    return None if outcome is None else str(outcome)
