"""Which handler reads which queue of `contracts.topology` (thin: the runtime decodes)."""

from functools import partial

from contracts import (
    MessageParked,
    PaymentDebited,
    PaymentDebitFailed,
    PaymentRefunded,
    SagaCompensationFailed,
    consumer,
)
from saga_log import Faults, Subscription
from services.payment import handlers


def subscriptions(faults: Faults) -> list[Subscription]:
    return [
        Subscription(
            consumer("payment", "debit_payment"),
            partial(handlers.debit_payment, faults=faults),
            batch_handler=partial(handlers.debit_payments, faults=faults),
        ),
        Subscription(
            consumer("payment", "refund_payment"), partial(handlers.refund_payment, faults=faults)
        ),
        Subscription(consumer("payment", "cancel_payment"), handlers.cancel_payment),
    ]


#: The events this service publishes (for its AsyncAPI document).
PUBLISHES = (
    PaymentDebited,
    PaymentDebitFailed,
    PaymentRefunded,
    SagaCompensationFailed,
    MessageParked,
)

DESCRIPTION = (
    "The payment service: ProcessPayment (a Debit) and its compensation ProcessRefund (a Credit)."
)
