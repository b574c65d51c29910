"""Which handler reads which of the inventory service's declared queues."""

from functools import partial

from contracts import consumer
from saga_log.runtime import RuntimeSettings, Subscription
from services.inventory import handlers


def subscriptions(settings: RuntimeSettings) -> list[Subscription]:
    faults = settings.fault_plan()
    return [
        Subscription(
            consumer("inventory", "reserve_inventory"),
            partial(handlers.reserve_inventory, faults=faults),
        ),
        Subscription(
            consumer("inventory", "release_inventory"),
            partial(handlers.release_inventory, faults=faults),
        ),
        Subscription(consumer("inventory", "cancel_reservation"), handlers.cancel_reservation),
        Subscription(consumer("inventory", "order_succeeded"), handlers.order_succeeded),
    ]
