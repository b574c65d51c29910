"""The fare service's watch over time: a fare with no outcome in time is cancelled (the
lab's state timeouts). The fare service ends it (FareProcessingFailed, fare failed) and
publishes FareCancelled, on which payment and accounting undo what they did and refuse
what comes late."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from contracts import FARE
from saga_log.runtime import ServiceRuntime, UnitOfWork, metrics, repeatedly
from services.fare import domain, store
from services.fare.domain import FareStatus, SagaOutcome

log = logging.getLogger(__name__)

BATCH = 100
STEP_TIMED_OUT = "StepTimedOut"
DEADLINE_EXCEEDED = "SagaDeadlineExceeded"


async def watch_deadlines(runtime: ServiceRuntime) -> None:
    """Cancel overdue fares, every `deadline_check_interval` seconds, until cancelled."""
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
    """Cancel up to BATCH overdue fares in one transaction; returns how many."""
    now = datetime.now(UTC)
    async with uow:
        overdue = await store.overdue_sagas(
            uow, now=now, step_timeout=step_timeout, saga_deadline=saga_deadline, limit=BATCH
        )
        for fare_id, started_at, updated_at in overdue:
            expired = started_at < now - saga_deadline
            reason = DEADLINE_EXCEEDED if expired else STEP_TIMED_OUT
            waited = (now - (started_at if expired else updated_at)).total_seconds()
            await store.end_saga(uow, fare_id, SagaOutcome.FAILED, error=reason)
            fare = await store.set_status(uow, fare_id, FareStatus.FAILED)
            uow.publish(
                *domain.cancel_fare(
                    fare_id,
                    fare,
                    reason=reason,
                    waited_seconds=waited,
                    causation_id=f"deadline:{fare_id}",
                )
            )
            log.warning(
                "fare saga cancelled",
                extra={"fare_id": fare_id, "reason": reason, "waited_s": round(waited, 3)},
            )
            metrics.SAGA_SECONDS.labels(domain.SERVICE, FARE.name, "cancelled").observe(
                (now - started_at).total_seconds()
            )
        await uow.commit()
    return len(overdue)
