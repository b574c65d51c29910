"""The fare service's watch over time: a fare with no outcome in time is cancelled (the
lab's state timeouts; the runtime's deadline watch finds it). The fare service ends it
(FareProcessingFailed, fare failed) and publishes FareCancelled, on which payment and
accounting undo what they did and refuse what comes late."""

from __future__ import annotations

from contracts import FARE
from saga_log.runtime import Cancellation, Overdue, UnitOfWork, deadline_watch
from services.fare import domain, store
from services.fare.domain import FareStatus, SagaOutcome
from services.fare.tables import fare_sagas


async def cancel(uow: UnitOfWork, saga: Overdue, why: Cancellation) -> None:
    """Cancel one overdue fare (its saga's row is locked for this transaction)."""
    await store.end_saga(uow, saga.saga_id, SagaOutcome.FAILED, error=why.reason)
    fare = await store.set_status(uow, saga.saga_id, FareStatus.FAILED)
    uow.publish(
        *domain.cancel_fare(
            saga.saga_id,
            fare,
            reason=why.reason,
            waited_seconds=why.waited_seconds,
            causation_id=f"deadline:{saga.saga_id}",
        )
    )


watch_deadlines = deadline_watch(
    saga=FARE.name, sagas=fare_sagas, find_overdue=store.overdue_sagas, cancel=cancel
)
