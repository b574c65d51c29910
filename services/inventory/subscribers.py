"""Which handler reads which queue of `contracts.topology` (thin: the runtime decodes)."""

from functools import partial

from contracts import (
    InventoryReleased,
    InventoryReserved,
    InventoryReserveFailed,
    MessageParked,
    SagaCompensationFailed,
    consumer,
)
from saga_log import Faults, Subscription
from services.inventory import handlers


def subscriptions(faults: Faults) -> list[Subscription]:
    return [
        Subscription(
            consumer("inventory", "reserve_inventory"),
            partial(handlers.reserve_inventory, faults=faults),
            batch_handler=partial(handlers.reserve_inventories, faults=faults),
        ),
        Subscription(
            consumer("inventory", "release_inventory"),
            partial(handlers.release_inventory, faults=faults),
        ),
        Subscription(consumer("inventory", "cancel_reservation"), handlers.cancel_reservation),
    ]


#: The events this service publishes (for its AsyncAPI document).
PUBLISHES = (
    InventoryReserved,
    InventoryReserveFailed,
    InventoryReleased,
    SagaCompensationFailed,
    MessageParked,
)

DESCRIPTION = "The inventory service: ReserveInventory and its compensation ReleaseInventory."
