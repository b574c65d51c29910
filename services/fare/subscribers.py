"""Which handler reads which of the fare service's declared queues (the runtime decodes)."""

from functools import partial

from contracts import FARE, consumer
from saga_log.runtime import RuntimeSettings, Subscription
from services.fare import handlers


def subscriptions(settings: RuntimeSettings) -> list[Subscription]:
    cipher = settings.field_cipher()
    return [
        Subscription(
            consumer("fare", "register_fare"),
            partial(handlers.register_fare, cipher=cipher),
            on_invalid=FARE.reject,
        ),
        Subscription(consumer("fare", "fail_fare"), handlers.fail_fare),
        Subscription(consumer("fare", "conclude_fare"), handlers.conclude_fare),
        # The fare's own view (GET /fares) shows the charge it records, and the step
        # timeout measures from the progress it notes: neither may lag.
        Subscription(consumer("fare", "record_charge"), handlers.record_charge, prompt=True),
    ]
