"""Which handler reads which of the order service's declared queues (the runtime decodes)."""

from functools import partial

from contracts import ORDER, consumer
from saga_log.runtime import RuntimeSettings, Subscription
from services.order import handlers


def subscriptions(settings: RuntimeSettings) -> list[Subscription]:
    faults = settings.fault_plan()
    return [
        Subscription(
            consumer("order", "process_order"),
            partial(handlers.process_order, faults=faults),
            on_invalid=ORDER.reject,
        ),
        Subscription(
            consumer("order", "update_order_status"),
            partial(handlers.update_order_status, faults=faults),
        ),
        Subscription(consumer("order", "conclude_saga"), handlers.conclude_saga),
        # GET /orders shows the transactions it records (a client that reads the order as
        # soon as its saga ends must find them there), and the step timeout measures from
        # the progress it notes: neither may lag.
        Subscription(
            consumer("order", "record_transaction"), handlers.record_transaction, prompt=True
        ),
    ]
