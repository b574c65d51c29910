"""Which handler reads which of the accounting service's declared queues."""

from functools import partial

from contracts import consumer
from saga_log.runtime import RuntimeSettings, Subscription
from services.accounting import handlers


def subscriptions(settings: RuntimeSettings) -> list[Subscription]:
    faults = settings.fault_plan()
    return [
        Subscription(
            consumer("accounting", "credit_account"),
            partial(handlers.credit_account, faults=faults),
        ),
        Subscription(consumer("accounting", "cancel_credit"), handlers.cancel_credit),
        Subscription(consumer("accounting", "fare_succeeded"), handlers.fare_succeeded),
    ]
