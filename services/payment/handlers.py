"""One function per queue of the payment service, each taking a batch of messages (see
services.order.handlers). The payment service owns both sagas' payments: the order saga's
Debit and Credit, and the fare saga's charge and refund.

Each takes its sagas' locks first, so that a cancellation and a late event of the same
saga, handled at the same moment in two processes, run one after the other.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial
from typing import Any

from contracts import (
    FARE,
    ORDER,
    CustomerAccountCreditFailed,
    Event,
    FareCancelled,
    FareProcessingSucceeded,
    FareRegistered,
    Faults,
    FieldCipher,
    InventoryReleased,
    OrderCancelled,
    OrderCreated,
    OrderSucceeded,
    PaymentDebitFailed,
)
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
from services.payment import domain, fares, store
from services.payment.tables import cancelled_sagas, succeeded_sagas

log = logging.getLogger(__name__)


# --- the order saga ------------------------------------------------------------------


async def debit_payment(uow: UnitOfWork, batch: Batch[OrderCreated], *, faults: Faults) -> None:
    """ProcessPayment: debit each order's total (never for a cancelled saga), in three
    statements whatever the batch's size."""
    live, _ = await split_cancelled(
        uow,
        cancelled_sagas,
        batch,
        saga_type=ORDER.name,
        late="OrderCreated after the saga was cancelled: not debited",
    )
    written = []
    for received in live:
        payment, outcome = domain.debit(
            received.message,
            causation_id=received.message_id,
            now=datetime.now(UTC),
            faults=faults,
        )
        written.append(payment)
        uow.publish(outcome)
    await store.write_payments(uow, *written)


async def refund_payment(
    uow: UnitOfWork, batch: Batch[PaymentDebitFailed | InventoryReleased], *, faults: Faults
) -> None:
    """ProcessRefund, the compensation of ProcessPayment: credit back the stored Debit."""
    await one_by_one(uow, batch, partial(_refund_payment, faults=faults))


async def _refund_payment(
    uow: UnitOfWork, received: Received[PaymentDebitFailed | InventoryReleased], *, faults: Faults
) -> None:
    event = received.message
    await uow.lock_saga(received.saga_id)
    if await succeeded(uow, succeeded_sagas, received, saga_type=ORDER.name, undoing="Debit"):
        return
    cause = event.error if isinstance(event, PaymentDebitFailed) else event.cause
    _, outcome = await _refund(uow, received, cause, faults)
    uow.publish(outcome)


async def cancel_payment(uow: UnitOfWork, batch: Batch[OrderCancelled]) -> None:
    """The order saga was cancelled: refund its Debit if there is one; debit nothing later."""
    await one_by_one(uow, batch, _cancel_payment)


async def _cancel_payment(uow: UnitOfWork, received: Received[OrderCancelled]) -> None:
    event = received.message
    await uow.lock_saga(received.saga_id)
    if await succeeded(uow, succeeded_sagas, received, saga_type=ORDER.name, undoing="Debit"):
        return
    await mark_cancelled(
        uow, cancelled_sagas, saga_type=ORDER.name, saga_id=event.order_id, reason=event.reason
    )
    cause = f"OrderCancelled: {event.reason}"
    credit, outcome = await _refund(uow, received, cause, domain.NO_FAULTS)
    if credit is not None:
        uow.publish(outcome)


async def order_succeeded(uow: UnitOfWork, batch: Batch[OrderSucceeded]) -> None:
    """The order saga succeeded: nothing refunds its Debit after this."""
    ids = [received.saga_id for received in batch]
    await mark_succeeded(uow, succeeded_sagas, saga_type=ORDER.name, saga_ids=ids)


async def fare_succeeded(uow: UnitOfWork, batch: Batch[FareProcessingSucceeded]) -> None:
    """The fare saga succeeded: nothing refunds its charge after this."""
    ids = [received.saga_id for received in batch]
    await mark_succeeded(uow, succeeded_sagas, saga_type=FARE.name, saga_ids=ids)


async def _refund(
    uow: UnitOfWork, received: Received[Any], cause: str, faults: Faults
) -> tuple[domain.Payment | None, Event]:
    """Credit back the saga's stored Debit (call with the saga's lock held); returns the
    Credit written (None if there was no Debit) and the outcome to publish."""
    order_id = received.saga_id
    credit, outcome = domain.refund(
        await store.debit_of(uow, order_id),
        order_id=order_id,
        cause=cause,
        causation_id=received.message_id,
        now=datetime.now(UTC),
        faults=faults,
    )
    if credit is not None:
        await store.write_payments(uow, credit)
    return credit, outcome


# --- the fare saga -------------------------------------------------------------------


async def charge_fare(
    uow: UnitOfWork, batch: Batch[FareRegistered], *, faults: Faults, cipher: FieldCipher
) -> None:
    """ChargeFare: authorise each fare's card, then capture the fare (never for a cancelled
    saga). The card is opened from its sealed fields, used, and forgotten."""
    live, _ = await split_cancelled(
        uow,
        cancelled_sagas,
        batch,
        saga_type=FARE.name,
        late="FareRegistered after the fare was cancelled: not charged",
    )
    written = []
    for received in live:
        fare = received.message
        charge, outcome = fares.charge(
            fare, _card(fare, cipher), causation_id=received.message_id, faults=faults
        )
        written.append(charge)
        uow.publish(outcome)
    await store.write_charges(uow, *written)


def _card(fare: FareRegistered, cipher: FieldCipher) -> fares.Card | None:
    if fare.cc is None:
        return None
    opened = [
        cipher.open_field(value, saga_id=fare.fareId, name=name) if value is not None else ""
        for name, value in (("cc", fare.cc), ("expiryDate", fare.expiryDate), ("cvv", fare.cvv))
    ]
    return fares.Card(*opened)


async def refund_fare(
    uow: UnitOfWork, batch: Batch[CustomerAccountCreditFailed], *, faults: Faults
) -> None:
    """RefundFare, the compensation of ChargeFare: refund the captured charge."""
    await one_by_one(uow, batch, partial(_refund_fare, faults=faults))


async def _refund_fare(
    uow: UnitOfWork, received: Received[CustomerAccountCreditFailed], *, faults: Faults
) -> None:
    event = received.message
    await uow.lock_saga(received.saga_id)
    if await succeeded(uow, succeeded_sagas, received, saga_type=FARE.name, undoing="charge"):
        return
    _, outcome = await _refund_charge(uow, received, event.customerId, event.error, faults)
    uow.publish(outcome)


async def cancel_fare_charge(uow: UnitOfWork, batch: Batch[FareCancelled]) -> None:
    """The fare saga was cancelled: refund its charge if one was captured; charge nothing
    later."""
    await one_by_one(uow, batch, _cancel_fare_charge)


async def _cancel_fare_charge(uow: UnitOfWork, received: Received[FareCancelled]) -> None:
    event = received.message
    await uow.lock_saga(received.saga_id)
    if await succeeded(uow, succeeded_sagas, received, saga_type=FARE.name, undoing="charge"):
        return
    await mark_cancelled(
        uow, cancelled_sagas, saga_type=FARE.name, saga_id=event.fareId, reason=event.reason
    )
    cause = f"FareCancelled: {event.reason}"
    refunded, outcome = await _refund_charge(uow, received, None, cause, domain.NO_FAULTS)
    if refunded is not None:
        uow.publish(outcome)


async def _refund_charge(
    uow: UnitOfWork, received: Received[Any], customer_id: str | None, cause: str, faults: Faults
) -> tuple[fares.FareCharge | None, Event]:
    """Refund the fare's captured charge (call with the saga's lock held); returns the
    charge refunded now (None if nothing was) and the outcome to publish."""
    refunded, outcome = fares.refund(
        await store.charge_of(uow, received.saga_id),
        fare_id=received.saga_id,
        customer_id=customer_id,
        cause=cause,
        causation_id=received.message_id,
        faults=faults,
    )
    if refunded is not None and not await store.mark_refunded(uow, refunded):
        return None, outcome  # refunded meanwhile: undone once is enough
    return refunded, outcome
