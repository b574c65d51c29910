"""Which handler reads which queue of `contracts.topology` (thin: the runtime decodes)."""

from functools import partial

from contracts import (
    MessageParked,
    OrderCreated,
    OrderCreateFailed,
    OrderFailed,
    OrderRejected,
    OrderStatusUpdated,
    OrderSucceeded,
    SagaCancelled,
    SagaCompensationFailed,
    consumer,
)
from saga_log import Faults, Subscription
from services.order import domain, handlers


def subscriptions(faults: Faults) -> list[Subscription]:
    return [
        Subscription(
            consumer("order", "process_order"),
            partial(handlers.process_order, faults=faults),
            on_invalid=domain.reject_order,
            batch_handler=partial(handlers.process_orders, faults=faults),
        ),
        Subscription(
            consumer("order", "update_order_status"),
            partial(handlers.update_order_status, faults=faults),
        ),
        Subscription(
            consumer("order", "conclude_saga"),
            handlers.conclude_saga,
            batch_handler=handlers.conclude_sagas,
        ),
        Subscription(
            consumer("order", "record_transaction"),
            handlers.record_transaction,
            batch_handler=handlers.record_transactions,
        ),
    ]


#: The events this service publishes (for its AsyncAPI document).
PUBLISHES = (
    OrderCreated,
    OrderCreateFailed,
    SagaCompensationFailed,
    OrderSucceeded,
    OrderFailed,
    OrderRejected,
    OrderStatusUpdated,
    SagaCancelled,
    MessageParked,
)

DESCRIPTION = (
    "The order service: ProcessOrder, its compensation UpdateOrderStatus, and the end of "
    "every saga (OrderSucceeded or OrderFailed)."
)
