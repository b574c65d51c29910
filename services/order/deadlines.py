"""The order service's watch over time: a saga with no outcome in time is cancelled.

A saga is overdue when it has heard nothing for longer than the step timeout (a service is
down, a message was parked) or when it has run longer than the saga deadline. The order
service then ends it (OrderFailed, order Pending) and publishes SagaCancelled, on which every
service compensates what it did and refuses what comes late.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select, update

from saga_log import ServiceRuntime, UnitOfWork
from saga_log.metrics import SAGA_SECONDS
from services.order import domain
from services.order.domain import OrderStatus, SagaOutcome
from services.order.tables import order_sagas, orders

log = logging.getLogger(__name__)

BATCH = 100
STEP_TIMED_OUT = "StepTimedOut"
DEADLINE_EXCEEDED = "SagaDeadlineExceeded"


async def watch_deadlines(runtime: ServiceRuntime) -> None:
    """Cancel overdue sagas, every `deadline_check_interval` seconds, until cancelled."""
    settings = runtime.settings
    while True:
        await asyncio.sleep(settings.deadline_check_interval)
        try:
            while (
                await cancel_overdue(
                    runtime.unit_of_work(),
                    step_timeout=timedelta(seconds=settings.step_timeout),
                    saga_deadline=timedelta(seconds=settings.saga_deadline),
                )
                == BATCH
            ):
                pass
        except Exception:
            log.exception("deadline check failed; trying again at the next interval")


async def cancel_overdue(
    uow: UnitOfWork, *, step_timeout: timedelta, saga_deadline: timedelta
) -> int:
    """Cancel up to BATCH overdue sagas in one transaction; returns how many."""
    now = datetime.now(UTC)
    async with uow:
        rows = (
            await uow.connection.execute(
                select(order_sagas.c.order_id, order_sagas.c.started_at, order_sagas.c.updated_at)
                .where(
                    order_sagas.c.outcome == SagaOutcome.RUNNING,
                    or_(
                        order_sagas.c.started_at < now - saga_deadline,
                        order_sagas.c.updated_at < now - step_timeout,
                    ),
                )
                .order_by(order_sagas.c.updated_at)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for row in rows:
            expired = row.started_at < now - saga_deadline
            reason = DEADLINE_EXCEEDED if expired else STEP_TIMED_OUT
            waited = (now - (row.started_at if expired else row.updated_at)).total_seconds()
            await uow.connection.execute(
                update(order_sagas)
                .where(order_sagas.c.order_id == row.order_id)
                .values(outcome=SagaOutcome.FAILED, cause=reason, updated_at=func.now())
            )
            await uow.connection.execute(
                update(orders)
                .where(orders.c.order_id == row.order_id)
                .values(order_status=OrderStatus.PENDING)
            )
            uow.publish(
                *domain.cancel_saga(
                    row.order_id,
                    reason=reason,
                    waited_seconds=waited,
                    causation_id=f"deadline:{row.order_id}",
                )
            )
            log.warning(
                "saga cancelled",
                extra={"order_id": row.order_id, "reason": reason, "waited_s": round(waited, 3)},
            )
            SAGA_SECONDS.labels("order", "cancelled").observe(
                (now - row.started_at).total_seconds()
            )
        await uow.commit()
    return len(rows)
