"""The order service's watch over time: a saga with no outcome in time is cancelled.

A saga is overdue when it has heard nothing for longer than the step timeout (a service is
down, a message was parked) or when it has run longer than the saga deadline. The order
service then ends it (OrderFailed, order Pending) and publishes OrderCancelled, on which
every service compensates what it did and refuses what comes late.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from saga_log.runtime import ServiceRuntime, UnitOfWork, metrics, repeatedly
from services.order import domain, store

log = logging.getLogger(__name__)

BATCH = 100
STEP_TIMED_OUT = "StepTimedOut"
DEADLINE_EXCEEDED = "SagaDeadlineExceeded"


async def watch_deadlines(runtime: ServiceRuntime) -> None:
    """Cancel overdue sagas, every `deadline_check_interval` seconds, until cancelled."""
    settings = runtime.settings

    async def check() -> bool:
        cancelled = await cancel_overdue(
            runtime.unit_of_work(),
            step_timeout=timedelta(seconds=settings.step_timeout),
            saga_deadline=timedelta(seconds=settings.saga_deadline),
        )
        return cancelled == BATCH

    await repeatedly(check, interval=settings.deadline_check_interval, what="deadline check")


async def cancel_overdue(
    uow: UnitOfWork, *, step_timeout: timedelta, saga_deadline: timedelta
) -> int:
    """Cancel up to BATCH overdue sagas in one transaction; returns how many."""
    now = datetime.now(UTC)
    async with uow:
        overdue = await store.overdue_sagas(
            uow, now=now, step_timeout=step_timeout, saga_deadline=saga_deadline, limit=BATCH
        )
        for order_id, started_at, updated_at in overdue:
            expired = started_at < now - saga_deadline
            reason = DEADLINE_EXCEEDED if expired else STEP_TIMED_OUT
            waited = (now - (started_at if expired else updated_at)).total_seconds()
            await store.cancel_saga(uow, order_id, reason)
            uow.publish(
                *domain.cancel_saga(
                    order_id,
                    reason=reason,
                    waited_seconds=waited,
                    causation_id=f"deadline:{order_id}",
                )
            )
            log.warning(
                "saga cancelled",
                extra={"order_id": order_id, "reason": reason, "waited_s": round(waited, 3)},
            )
            metrics.SAGA_SECONDS.labels("order", "order", "cancelled").observe(
                (now - started_at).total_seconds()
            )
        await uow.commit()
    return len(overdue)
