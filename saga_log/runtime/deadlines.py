"""The watch over time of the service that starts a saga: a saga with no outcome in time
is cancelled (the samples' task and execution timeouts).

A saga is overdue when it has heard nothing for longer than the step timeout (a service is
down, a message was parked) or when it has run longer than the saga deadline. The service
finds its overdue sagas and cancels each in its own way (`cancel`: end it failed, publish
its cancellation and its terminal event); this module does the rest: the schedule, the
batches, the reason, the logs and the metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table

from contracts import saga_named
from saga_log.runtime import metrics
from saga_log.runtime.database import driver_of
from saga_log.runtime.service import ServiceRuntime, repeatedly
from saga_log.runtime.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

BATCH = 100
STEP_TIMED_OUT = "StepTimedOut"
DEADLINE_EXCEEDED = "SagaDeadlineExceeded"


@dataclass(frozen=True)
class Overdue:
    """A running saga past its time: its id, when it started, when it last progressed."""

    saga_id: str
    started_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Cancellation:
    """Why an overdue saga is cancelled, and how long it waited."""

    reason: str
    waited_seconds: float


#: (uow, now, step timeout, saga deadline, limit) -> the overdue sagas, locked for this
#: transaction (`FOR UPDATE SKIP LOCKED`, so that replicas share the work).
FindOverdue = Callable[[UnitOfWork, datetime, timedelta, timedelta, int], Awaitable[list[Overdue]]]
#: (uow, saga, cancellation) -> end the saga failed and publish its cancellation.
Cancel = Callable[[UnitOfWork, Overdue, Cancellation], Awaitable[None]]


def deadline_watch(
    *, saga: str, sagas: Table, find_overdue: FindOverdue, cancel: Cancel
) -> Callable[[ServiceRuntime], Coroutine[Any, Any, None]]:
    """A background job (ServiceDefinition.background) that cancels the overdue sagas of
    type `saga` every `deadline_check_interval` seconds. `sagas` is the service's table of
    its sagas (`outcome`, `started_at`, `updated_at`, a partial index on the running ones),
    read first to learn whether anything is overdue at all."""
    any_overdue = _any_overdue_statement(sagas.name)

    async def watch_deadlines(runtime: ServiceRuntime) -> None:
        settings = runtime.settings
        declared = saga_named(saga)
        may_publish = next(p.on_deadline for p in declared.participants if p.name == runtime.name)
        step_timeout = timedelta(seconds=settings.step_timeout)
        saga_deadline = timedelta(seconds=settings.saga_deadline)

        async def check() -> bool:
            # One indexed read outside a transaction first: the check runs every second
            # of an idle service's life, and its locking transaction through SQLAlchemy
            # was about a third of an idle order service's CPU (docs/performance.md,
            # third round). Something overdue after this read is found at the next
            # check, as before.
            async with runtime.engine.connect() as connection:
                driver = await driver_of(connection)
                if await driver.fetchval(any_overdue, saga_deadline, step_timeout) is None:
                    return False
            uow = runtime.unit_of_work()
            uow.restrict(may_publish)  # what the declaration lets a deadline watch publish
            cancelled = await cancel_overdue(
                uow,
                service=runtime.name,
                saga=saga,
                find_overdue=find_overdue,
                cancel=cancel,
                step_timeout=step_timeout,
                saga_deadline=saga_deadline,
            )
            return cancelled == BATCH

        await repeatedly(check, interval=settings.deadline_check_interval, what="deadline check")

    return watch_deadlines


async def cancel_overdue(
    uow: UnitOfWork,
    *,
    service: str,
    saga: str,
    find_overdue: FindOverdue,
    cancel: Cancel,
    step_timeout: timedelta,
    saga_deadline: timedelta,
) -> int:
    """Cancel up to BATCH overdue sagas in one transaction; returns how many. Times come
    from one clock, the database's, which stamped every saga's start and progress."""
    async with uow:
        now = await uow.now()
        overdue = await find_overdue(uow, now, step_timeout, saga_deadline, BATCH)
        for found in overdue:
            expired = found.started_at < now - saga_deadline
            since = found.started_at if expired else found.updated_at
            why = Cancellation(
                DEADLINE_EXCEEDED if expired else STEP_TIMED_OUT, (now - since).total_seconds()
            )
            await cancel(uow, found, why)
            log.warning(
                "saga cancelled",
                extra={
                    "saga_type": saga,
                    "saga_id": found.saga_id,
                    "reason": why.reason,
                    "waited_s": round(why.waited_seconds, 3),
                },
            )
            metrics.SAGA_SECONDS.labels(service, saga, "cancelled").observe(
                (now - found.started_at).total_seconds()
            )
        await uow.commit()
    return len(overdue)


def _any_overdue_statement(sagas: str) -> str:
    # The same predicate as the services' find_overdue, with the literal the partial
    # index on running sagas is declared with, so that the index answers it.
    return (
        f"SELECT 1 FROM {sagas} WHERE outcome = 'running'"
        " AND (started_at < now() - $1::interval OR updated_at < now() - $2::interval) LIMIT 1"
    )
