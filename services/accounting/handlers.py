"""One function per queue of the accounting service, each taking a batch of messages (see
services.order.handlers). Each takes its sagas' locks first, so that a cancellation and a
late charge of the same fare, handled at once in two processes, run one after the other."""

from __future__ import annotations

import logging

from contracts import FARE, FareCancelled, FareCharged, FareProcessingSucceeded, Faults
from saga_log.runtime import (
    Batch,
    Received,
    UnitOfWork,
    mark_cancelled,
    mark_succeeded,
    one_by_one,
    split_cancelled,
    succeeded,
)
from services.accounting import domain, store
from services.accounting.tables import cancelled_sagas, succeeded_sagas

log = logging.getLogger(__name__)


async def credit_account(uow: UnitOfWork, batch: Batch[FareCharged], *, faults: Faults) -> None:
    """CreditCustomerAccount: credit each customer's account with the fare's charge (never
    for a cancelled fare: its charge is refunded by the payment service)."""
    live, _ = await split_cancelled(
        uow,
        cancelled_sagas,
        batch,
        saga_type=FARE.name,
        late="FareCharged after the fare was cancelled: not credited",
    )
    written = []
    for received in live:
        credit, outcome = domain.credit_account(
            received.message, causation_id=received.message_id, faults=faults
        )
        if credit is not None:
            written.append(credit)
        uow.publish(outcome)
    await store.write_credits(uow, *written)


async def cancel_credit(uow: UnitOfWork, batch: Batch[FareCancelled]) -> None:
    """The fare was cancelled: reverse its credit if there is one; credit nothing later."""
    await one_by_one(uow, batch, _cancel_credit)


async def _cancel_credit(uow: UnitOfWork, received: Received[FareCancelled]) -> None:
    event = received.message
    await uow.lock_saga(received.saga_id)
    if await succeeded(uow, succeeded_sagas, received, saga_type=FARE.name, undoing="credit"):
        return
    await mark_cancelled(
        uow, cancelled_sagas, saga_type=FARE.name, saga_id=event.fareId, reason=event.reason
    )
    reversed_credit = await store.reverse_credit(uow, event.fareId)
    if reversed_credit is not None:
        uow.publish(
            domain.credit_reversed(
                reversed_credit,
                cause=f"FareCancelled: {event.reason}",
                causation_id=received.message_id,
            )
        )


async def fare_succeeded(uow: UnitOfWork, batch: Batch[FareProcessingSucceeded]) -> None:
    """The fare saga succeeded: nothing reverses its credit after this."""
    ids = [received.saga_id for received in batch]
    await mark_succeeded(uow, succeeded_sagas, saga_type=FARE.name, saga_ids=ids)
