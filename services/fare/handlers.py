"""One function per queue of the fare service, each taking a batch of messages (see
services.order.handlers). Each runs inside the delivery's unit of work and publishes only
through it (the outbox); the delivery commits."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from contracts import (
    FARE,
    CustomerAccountCredited,
    CustomerAccountCreditFailed,
    FareCharged,
    FareChargeFailed,
    FareProcessingFailed,
    FareProcessingSucceeded,
    FareRefunded,
    FareRefundFailed,
    FareRegistered,
    FareStatusUpdateFailed,
    FieldCipher,
    SubmitFare,
)
from contracts.secrets import is_sealed
from saga_log.runtime import Batch, Received, UnitOfWork, metrics, one_by_one
from services.fare import domain, store
from services.fare.domain import FareStatus, SagaOutcome

log = logging.getLogger(__name__)


async def register_fare(uow: UnitOfWork, batch: Batch[SubmitFare], *, cipher: FieldCipher) -> None:
    """RegisterFare: store each fare (the card's last four digits only) and start its saga;
    the card fields travel on sealed, for the charge. A fareId seen before starts nothing."""
    registered: dict[str, tuple[domain.Fare, FareRegistered]] = {}
    for received in batch:
        command = received.message
        if command.fareId in registered:
            continue
        # A retry copy holds the card already sealed (saga_log.runtime's Protection).
        card = {name: getattr(command, name) for name in domain.CARD_FIELDS}
        sealed = cipher.seal_fields(card, domain.CARD_FIELDS, saga_id=command.fareId)
        number = card["cc"]
        if is_sealed(number):
            number = cipher.open_field(number, saga_id=command.fareId, name="cc")
        registered[command.fareId] = domain.register_fare(
            command, sealed=sealed, card_number=number, causation_id=received.message_id
        )
    new = await store.insert_new_fares(uow, [fare for fare, _ in registered.values()])
    for fare_id, (_, event) in registered.items():
        if fare_id in new:
            uow.publish(event)
        else:
            log.info("fare already registered; no second saga", extra={"fare_id": fare_id})


async def fail_fare(uow: UnitOfWork, batch: Batch[FareChargeFailed | FareRefunded]) -> None:
    """SetFareStatusFailed, the compensation of RegisterFare: mark the fare failed, then end
    the saga as failed (NotifyFailure, naming the error)."""
    await one_by_one(uow, batch, _fail_fare)


async def _fail_fare(uow: UnitOfWork, received: Received[FareChargeFailed | FareRefunded]) -> None:
    event = received.message
    await uow.lock_saga(received.saga_id)
    if await store.saga_outcome(uow, event.fareId) == SagaOutcome.SUCCEEDED:
        log.warning(
            "compensation for a fare that succeeded: its status stays",
            extra={"fare_id": event.fareId, "message_id": received.message_id},
        )
        return
    error = event.error if isinstance(event, FareChargeFailed) else event.cause
    fare = await store.set_status(uow, event.fareId, FareStatus.FAILED)
    if fare is None:
        log.warning("compensation for an unknown fare ignored", extra={"fare_id": event.fareId})
        return
    if not await _end(uow, received, fare, SagaOutcome.FAILED, error=error):
        uow.publish(domain.status_updated(event.fareId, causation_id=received.message_id))


async def conclude_fare(
    uow: UnitOfWork,
    batch: Batch[CustomerAccountCredited | FareRefundFailed | FareStatusUpdateFailed],
) -> None:
    """End each fare's saga: SetFareStatusCompleted and NotifySuccess once the account is
    credited; NotifyFailure once a compensation has failed (the fare's status is left as
    it is: the chain stopped). Only the first conclusion publishes."""
    await one_by_one(uow, batch, _conclude_fare)


async def _conclude_fare(
    uow: UnitOfWork,
    received: Received[CustomerAccountCredited | FareRefundFailed | FareStatusUpdateFailed],
) -> None:
    event = received.message
    if isinstance(event, CustomerAccountCredited):
        # Completed only if this ends the saga: a fare cancelled meanwhile stays failed. The
        # credit names the charge: the notification does not wait for record_charge.
        charge = (event.chargeToken, event.chargeId)
        if await _end(uow, received, None, SagaOutcome.SUCCEEDED, charge=charge):
            await store.set_status(uow, event.fareId, FareStatus.COMPLETED)
        return
    fare = await store.fare(uow, event.fareId)
    await _end(
        uow, received, fare, SagaOutcome.FAILED, error=event.error, failed_compensation=event.step
    )


async def record_charge(
    uow: UnitOfWork, batch: Batch[FareCharged | CustomerAccountCreditFailed]
) -> None:
    """Remember each fare's charge (for the success notification) and that its saga
    progressed."""
    for received in batch:
        event = received.message
        if isinstance(event, FareCharged):
            await store.record_charge(
                uow, event.fareId, charge_token=event.chargeToken, charge_id=event.chargeId
            )
        else:
            await store.record_charge(uow, event.fareId, charge_token=None, charge_id=None)


async def _end(
    uow: UnitOfWork,
    received: Received[Any],
    fare: domain.Fare | None,
    outcome: SagaOutcome,
    *,
    error: str | None = None,
    failed_compensation: str | None = None,
    charge: tuple[str, str] | None = None,
) -> bool:
    """End the saga with `outcome` and publish its terminal event; False if it had ended."""
    fare_id = received.saga_id
    ended = await store.end_saga(
        uow, fare_id, outcome, error=error, failed_compensation=failed_compensation, charge=charge
    )
    if ended is None:
        log.info("fare saga already concluded", extra={"fare_id": fare_id})
        return False
    started_at, charge_token, charge_id = ended
    metrics.SAGA_SECONDS.labels(domain.SERVICE, FARE.name, outcome).observe(
        (datetime.now(UTC) - started_at).total_seconds()
    )
    fare = fare or await store.fare(uow, fare_id)
    event: FareProcessingSucceeded | FareProcessingFailed
    if outcome is SagaOutcome.SUCCEEDED and fare is not None:
        event = domain.fare_succeeded(
            fare, charge_token=charge_token, charge_id=charge_id, causation_id=received.message_id
        )
    else:
        event = domain.fare_failed(
            fare_id,
            fare,
            error=error or "",
            causation_id=received.message_id,
            failed_compensation=failed_compensation,
        )
    uow.publish(event)
    return True
