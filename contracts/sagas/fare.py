"""The Wild Rydes fare saga (lab 4 of the AWS asynchronous messaging workshop,
FARE_BEHAVIOUR.md): its messages and its declaration.

A fare goes through RegisterFare (fare), ChargeFare (payment: authorise, then capture) and
CreditCustomerAccount (accounting). A failed charge marks the fare failed
(SetFareStatusFailed); a failed credit refunds the charge first (RefundFare). Every saga
ends with FareProcessingSucceeded or FareProcessingFailed, which the lab's two notification
queues receive. `SubmitFare` is the lab's fare JSON, exactly as a client publishes it.

The card number, expiry and CVV are secret: they travel sealed after the fare service
(`contracts.secrets`), and nothing stores, logs or shows them in clear.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field

from contracts.declaration import Participant, Reaction, Saga, Step
from contracts.envelope import (
    Command,
    CompensationFailed,
    Event,
    Name,
    SagaId,
    Secret,
    Text,
)
from contracts.faults import DemoFault


def _amount(value: Any) -> Any:
    # The lab writes amounts as "$20.00"; a person may type 20 or "20.00".
    if isinstance(value, str):
        text = value.strip().removeprefix("$").strip()
        try:
            return Decimal(text)
        except InvalidOperation:
            raise ValueError(f"not an amount: {value[:40]!r}") from None
    return value


Money = Annotated[Decimal, Field(max_digits=12, decimal_places=2)]
FareAmount = Annotated[
    Decimal, BeforeValidator(_amount), Field(gt=0, max_digits=12, decimal_places=2)
]
CustomerId = Annotated[str, Field(min_length=1, max_length=64)]
#: A charge, authorisation or refund id of the payment provider (`ch_` + 25 characters).
ProviderId = Annotated[str, Field(max_length=64)]
#: A card field as the client sends it (or as a retry copy holds it, sealed): secret, and
#: never in a model's repr.
CardField = Annotated[str | None, Secret(), Field(max_length=512, repr=False)]
#: A card field sealed by the fare service (`contracts.secrets`): still secret.
SealedField = Annotated[str | None, Secret(), Field(max_length=512, repr=False)]


class SubmitFare(Command):
    """The input that starts a fare saga: the lab's fare JSON, with no envelope. All values
    are strings and `fareAmount` carries a `$`; the card fields are needed by the charge only."""

    routing_key: ClassVar[str] = "fare.submitted"
    saga_id_field: ClassVar[str] = "fareId"

    customerId: CustomerId
    fareId: SagaId
    fareAmount: FareAmount
    cc: CardField = None
    expiryDate: CardField = None
    cvv: CardField = None


class FareEvent(Event):
    """An event of the fare saga: it repeats the saga id as `fareId`."""

    saga_id_field: ClassVar[str] = "fareId"
    fareId: SagaId


class FareRegistered(FareEvent):
    """RegisterFare stored the fare (the card's last four digits only). The card fields
    travel on sealed, for ChargeFare."""

    routing_key: ClassVar[str] = "fare.registered"
    type: Literal["FareRegistered"] = "FareRegistered"
    customerId: CustomerId
    fareAmount: Money
    cardLast4: Annotated[str, Field(max_length=4)] | None
    cc: SealedField
    expiryDate: SealedField
    cvv: SealedField


class FareCharged(FareEvent):
    """ChargeFare authorised the card and captured the fare."""

    routing_key: ClassVar[str] = "payment.fare_charged"
    type: Literal["FareCharged"] = "FareCharged"
    customerId: CustomerId
    fareAmount: Money
    chargeToken: ProviderId
    chargeId: ProviderId


class FareChargeFailed(FareEvent):
    """ChargeFare failed: the authorisation was declined (`error` PaymentAuthException,
    `reason` why), or the capture failed (PaymentChargeException) and the authorisation
    was voided."""

    routing_key: ClassVar[str] = "payment.fare_charge_failed"
    type: Literal["FareChargeFailed"] = "FareChargeFailed"
    customerId: CustomerId
    error: Name
    reason: Text | None = None
    chargeToken: ProviderId | None


class CustomerAccountCredited(FareEvent):
    """CreditCustomerAccount credited the customer's account with the charge (named by its
    token and id, which the success notification repeats)."""

    routing_key: ClassVar[str] = "accounting.account_credited"
    type: Literal["CustomerAccountCredited"] = "CustomerAccountCredited"
    customerId: CustomerId
    chargeToken: ProviderId
    chargeId: ProviderId
    amount: Money


class CustomerAccountCreditFailed(FareEvent):
    """CreditCustomerAccount failed (AccountCreditException): the charge is refunded."""

    routing_key: ClassVar[str] = "accounting.account_credit_failed"
    type: Literal["CustomerAccountCreditFailed"] = "CustomerAccountCreditFailed"
    customerId: CustomerId
    chargeId: ProviderId
    error: Text


class CustomerAccountCreditReversed(FareEvent):
    """The fare was cancelled after its credit was written: the credit is reversed."""

    routing_key: ClassVar[str] = "accounting.account_credit_reversed"
    type: Literal["CustomerAccountCreditReversed"] = "CustomerAccountCreditReversed"
    customerId: CustomerId
    amount: Money
    cause: Text


class FareRefunded(FareEvent):
    """RefundFare refunded the captured charge (`refundId` is None if nothing was
    captured: an authorisation is voided instead)."""

    routing_key: ClassVar[str] = "payment.fare_refunded"
    type: Literal["FareRefunded"] = "FareRefunded"
    chargeId: ProviderId | None
    refundId: ProviderId | None
    cause: Text


class FareRefundFailed(CompensationFailed, FareEvent):
    """RefundFare failed (RefundException): the chain stops, a human must look."""

    routing_key: ClassVar[str] = "payment.fare_refund_failed"
    type: Literal["FareRefundFailed"] = "FareRefundFailed"


class FareStatusUpdateFailed(CompensationFailed, FareEvent):
    """SetFareStatusFailed failed: the chain stops, a human must look."""

    routing_key: ClassVar[str] = "fare.status_update_failed"
    type: Literal["FareStatusUpdateFailed"] = "FareStatusUpdateFailed"


class FareProcessingSucceeded(FareEvent):
    """Terminal: the fare is completed (the lab's success notification)."""

    routing_key: ClassVar[str] = "fare.processing_succeeded"
    type: Literal["FareProcessingSucceeded"] = "FareProcessingSucceeded"
    customerId: CustomerId
    fareAmount: Money
    chargeToken: ProviderId | None
    chargeId: ProviderId | None


class FareProcessingFailed(FareEvent):
    """Terminal: the fare failed (the lab's failure notification): `error` is the name of
    the error that failed it; `failed_compensation` is set when a compensation failed too."""

    routing_key: ClassVar[str] = "fare.processing_failed"
    type: Literal["FareProcessingFailed"] = "FareProcessingFailed"
    customerId: CustomerId | None
    fareAmount: Money | None
    fareStatus: Name | None
    error: Text
    failed_compensation: Name | None = None


class FareCancelled(FareEvent):
    """The fare service gave up on a fare that had no outcome in time. Every service undoes
    what it did; a later event of this saga is not applied."""

    routing_key: ClassVar[str] = "fare.cancelled"
    type: Literal["FareCancelled"] = "FareCancelled"
    reason: Name
    waited_seconds: float


class FareStatusUpdated(FareEvent):
    """SetFareStatusFailed ran for a fare whose saga had already ended (a redriven refund
    reached it, or the refund of a cancelled fare): the fare is now `fareStatus`; no second
    terminal event is published."""

    routing_key: ClassVar[str] = "fare.status_updated"
    type: Literal["FareStatusUpdated"] = "FareStatusUpdated"
    fareStatus: Name


class FareRejected(FareEvent):
    """The fare JSON published on fare.submitted was not a valid fare: no saga started."""

    routing_key: ClassVar[str] = "fare.rejected"
    type: Literal["FareRejected"] = "FareRejected"
    reason: Text
    fields: Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=50)]


FARE = Saga(
    name="fare",
    title="Wild Rydes fare saga",
    starts_with=SubmitFare,
    participants=(
        Participant(
            "fare",
            steps=(
                Step(
                    "RegisterFare",
                    queue="register_fare",
                    on=(SubmitFare,),
                    succeeded=(FareRegistered,),
                    also=(FareRejected,),
                    doc="store the fare (the card's last four digits only) and start its saga",
                ),
                Step(
                    "SetFareStatusFailed",
                    queue="fail_fare",
                    compensates="RegisterFare",
                    on=(FareChargeFailed, FareRefunded),
                    succeeded=(FareProcessingFailed, FareStatusUpdated),
                    compensation_failed=FareStatusUpdateFailed,
                    doc="mark the fare failed and end the saga (NotifyFailure)",
                ),
            ),
            reactions=(
                Reaction(
                    "conclude_fare",
                    on=(CustomerAccountCredited, FareRefundFailed, FareStatusUpdateFailed),
                    emits=(FareProcessingSucceeded, FareProcessingFailed),
                    doc="end the saga: SetFareStatusCompleted and NotifySuccess once the "
                    "account is credited; NotifyFailure once a compensation has failed",
                ),
                Reaction(
                    "record_charge",
                    on=(FareCharged, CustomerAccountCreditFailed),
                    doc="remember the charge (for the success notification) and that the "
                    "saga progressed",
                ),
            ),
            on_deadline=(FareCancelled, FareProcessingFailed),
        ),
        Participant(
            "payment",
            steps=(
                Step(
                    "ChargeFare",
                    queue="charge_fare",
                    on=(FareRegistered,),
                    succeeded=(FareCharged,),
                    failed=(FareChargeFailed,),
                    doc="authorise the card, then capture the fare (voiding the "
                    "authorisation if the capture fails)",
                ),
                Step(
                    "RefundFare",
                    queue="refund_fare",
                    compensates="ChargeFare",
                    on=(CustomerAccountCreditFailed,),
                    succeeded=(FareRefunded,),
                    compensation_failed=FareRefundFailed,
                    doc="refund the captured charge",
                ),
            ),
            reactions=(
                Reaction(
                    "cancel_fare_charge",
                    on=(FareCancelled,),
                    emits=(FareRefunded,),
                    runs="RefundFare",
                    doc="refund or void a cancelled fare's charge and charge nothing later",
                ),
                Reaction(
                    "fare_succeeded",
                    on=(FareProcessingSucceeded,),
                    doc="remember the fare succeeded: nothing refunds its charge after that",
                ),
            ),
        ),
        Participant(
            "accounting",
            steps=(
                Step(
                    "CreditCustomerAccount",
                    queue="credit_account",
                    on=(FareCharged,),
                    succeeded=(CustomerAccountCredited,),
                    failed=(CustomerAccountCreditFailed,),
                    doc="credit the customer's account with the charge",
                ),
            ),
            reactions=(
                Reaction(
                    "cancel_credit",
                    on=(FareCancelled,),
                    emits=(CustomerAccountCreditReversed,),
                    doc="reverse a cancelled fare's credit and credit nothing later",
                ),
                Reaction(
                    "fare_succeeded",
                    on=(FareProcessingSucceeded,),
                    doc="remember the fare succeeded: nothing reverses its credit after that",
                ),
            ),
        ),
    ),
    succeeded=FareProcessingSucceeded,
    failed=FareProcessingFailed,
    cancelled=FareCancelled,
    rejected=FareRejected,
    notifications=(FareRejected, FareStatusUpdated, CustomerAccountCreditReversed),
    notification_queues={
        "WildRydesSuccessfulTransactionsQueue": (FareProcessingSucceeded,),
        "WildRydesFailedTransactionsQueue": (FareProcessingFailed,),
    },
    faults=(
        DemoFault("ChargeFare", "PaymentAuthException", "suffix", ("fail_auth",)),
        DemoFault("ChargeFare", "PaymentChargeException", "suffix", ("fail_charge",)),
        # fail_refund implies a failed credit (as the order saga's "22" implies "2"):
        # the lab's refund cannot be reached otherwise.
        DemoFault(
            "CreditCustomerAccount",
            "AccountCreditException",
            "suffix",
            ("fail_credit", "fail_refund"),
        ),
        DemoFault("RefundFare", "RefundException", "suffix", ("fail_refund",)),
    ),
    roles={
        "fare": "registers fares (RegisterFare), ends every fare saga and marks the fare "
        "completed or failed (SetFareStatusFailed)",
        "payment": "charges the fare (ChargeFare) and refunds it (RefundFare)",
        "accounting": "credits the customer's account (CreditCustomerAccount)",
    },
)
