"""The order service's watch over time: an order saga with no outcome in time is cancelled
(the runtime's deadline watch finds it). The order service ends it (OrderFailed, order
Pending) and publishes OrderCancelled, on which every service compensates what it did and
refuses what comes late."""

from __future__ import annotations

from contracts import ORDER
from saga_log.runtime import Cancellation, Overdue, UnitOfWork, deadline_watch
from services.order import domain, store
from services.order.tables import order_sagas


async def cancel(uow: UnitOfWork, saga: Overdue, why: Cancellation) -> None:
    """Cancel one overdue saga (its row is locked for this transaction)."""
    await store.cancel_saga(uow, saga.saga_id, why.reason)
    uow.publish(
        *domain.cancel_saga(
            saga.saga_id,
            reason=why.reason,
            waited_seconds=why.waited_seconds,
            causation_id=f"deadline:{saga.saga_id}",
        )
    )


watch_deadlines = deadline_watch(
    saga=ORDER.name, sagas=order_sagas, find_overdue=store.overdue_sagas, cancel=cancel
)
