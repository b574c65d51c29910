"""Which handler reads which of the payment service's declared queues (both sagas)."""

from functools import partial

from contracts import consumer
from saga_log.runtime import RuntimeSettings, Subscription
from services.payment import handlers


def subscriptions(settings: RuntimeSettings) -> list[Subscription]:
    faults = settings.fault_plan()
    cipher = settings.field_cipher()
    return [
        Subscription(
            consumer("payment", "debit_payment"), partial(handlers.debit_payment, faults=faults)
        ),
        Subscription(
            consumer("payment", "refund_payment"), partial(handlers.refund_payment, faults=faults)
        ),
        Subscription(consumer("payment", "cancel_payment"), handlers.cancel_payment),
        Subscription(
            consumer("payment", "charge_fare"),
            partial(handlers.charge_fare, faults=faults, cipher=cipher),
        ),
        Subscription(
            consumer("payment", "refund_fare"), partial(handlers.refund_fare, faults=faults)
        ),
        Subscription(consumer("payment", "cancel_fare_charge"), handlers.cancel_fare_charge),
        Subscription(consumer("payment", "order_succeeded"), handlers.order_succeeded),
        Subscription(consumer("payment", "fare_succeeded"), handlers.fare_succeeded),
    ]
