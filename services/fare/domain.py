"""The fare service's rules: RegisterFare, its compensation SetFareStatusFailed, and how a
fare saga ends. Pure: no database, no broker (the handler seals the card fields)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from contracts import (
    FareCancelled,
    FareProcessingFailed,
    FareProcessingSucceeded,
    FareRegistered,
    FareStatusUpdated,
    SubmitFare,
)

SERVICE = "fare"
#: The card fields, sealed for the charge and never stored.
CARD_FIELDS = ("cc", "expiryDate", "cvv")


class FareStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"


class SagaOutcome(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Fare:
    """A row of the lab's fares table, without the card (its last four digits only)."""

    fare_id: str
    customer_id: str
    fare_amount: Decimal
    card_last4: str | None
    fare_status: str | None = None


def card_last4(number: str | None) -> str | None:
    digits = re.sub(r"\D", "", number or "")
    return digits[-4:] if len(digits) >= 4 else None


def register_fare(
    command: SubmitFare,
    *,
    sealed: Mapping[str, str | None],
    card_number: str | None,
    causation_id: str,
) -> tuple[Fare, FareRegistered]:
    """RegisterFare: the fare is stored (no status yet, the card's last four digits only);
    the card fields travel on sealed."""
    fare = Fare(
        fare_id=command.fareId,
        customer_id=command.customerId,
        fare_amount=command.fareAmount,
        card_last4=card_last4(card_number),
    )
    event = FareRegistered.caused_by(
        causation_id,
        producer=SERVICE,
        fareId=command.fareId,
        customerId=command.customerId,
        fareAmount=command.fareAmount,
        cardLast4=fare.card_last4,
        **{name: sealed.get(name) for name in CARD_FIELDS},
    )
    return fare, event


def fare_succeeded(
    fare: Fare, *, charge_token: str | None, charge_id: str | None, causation_id: str
) -> FareProcessingSucceeded:
    """SetFareStatusCompleted and NotifySuccess: the lab's success notification."""
    return FareProcessingSucceeded.caused_by(
        causation_id,
        producer=SERVICE,
        fareId=fare.fare_id,
        customerId=fare.customer_id,
        fareAmount=fare.fare_amount,
        chargeToken=charge_token,
        chargeId=charge_id,
    )


def fare_failed(
    fare_id: str,
    fare: Fare | None,
    *,
    error: str,
    causation_id: str,
    failed_compensation: str | None = None,
) -> FareProcessingFailed:
    """NotifyFailure: the fare and the name of the error that failed it."""
    return FareProcessingFailed.caused_by(
        causation_id,
        producer=SERVICE,
        fareId=fare_id,
        customerId=fare.customer_id if fare else None,
        fareAmount=fare.fare_amount if fare else None,
        fareStatus=fare.fare_status if fare else None,
        error=error,
        failed_compensation=failed_compensation,
    )


def status_updated(fare_id: str, *, causation_id: str) -> FareStatusUpdated:
    """SetFareStatusFailed ran after its saga had ended (a redrive): say so, end nothing."""
    return FareStatusUpdated.caused_by(
        causation_id, producer=SERVICE, fareId=fare_id, fareStatus=FareStatus.FAILED
    )


def cancel_fare(
    fare_id: str, fare: Fare | None, *, reason: str, waited_seconds: float, causation_id: str
) -> tuple[FareCancelled, FareProcessingFailed]:
    """The fare service gives up on a fare that had no outcome in time: every service undoes
    what it did (FareCancelled) and the saga ends failed, the fare failed."""
    cancelled = FareCancelled.caused_by(
        causation_id,
        producer=SERVICE,
        fareId=fare_id,
        reason=reason,
        waited_seconds=round(waited_seconds, 3),
    )
    return cancelled, fare_failed(fare_id, fare, error=reason, causation_id=causation_id)
