"""The broker topology: declared the same way by every service, from this one place.

One durable topic exchange, `saga.events`, carries every message. Each consumer reads its
own durable quorum queue, named `<service>.<handler>`, bound by routing key. Beside each
work queue stand:

- `<queue>.retry.<tier>`: classic queues where a message waits out its retry delay
  (per-message TTL) before it is dead-lettered back to the work queue;
- `<queue>.parked`: messages whose retry budget is spent, kept for an operator;
- `<queue>.dlq`: messages that can never succeed (bad input), with the reason in headers.

Every service declares the whole topology at start, so that no event is published before
the queues that must receive it exist, whatever order the services start in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.messages import (
    InventoryReleased,
    InventoryReserved,
    InventoryReserveFailed,
    OrderCreated,
    OrderCreateFailed,
    PaymentDebited,
    PaymentDebitFailed,
    PaymentRefunded,
    PlaceOrder,
    SagaCancelled,
    SagaCompensationFailed,
    SagaMessage,
    Step,
)

EXCHANGE = "saga.events"

#: How many delay tiers stand behind each work queue (the sample retries 3 times).
RETRY_TIERS = 3

#: Quorum queues count deliveries; past this a message is dead-lettered rather than looping.
#: Set explicitly: RabbitMQ 3.10 has no default, 4.x defaults to 20.
DELIVERY_LIMIT = 20


@dataclass(frozen=True)
class Consumer:
    """A queue read by one handler of one service, and the messages bound to it."""

    service: str
    handler: str
    messages: tuple[type[Any], ...]
    #: The saga step this consumer runs, if it runs one.
    step: str | None = None
    #: Routing keys to bind instead of the messages' own (the recorder binds "#").
    bindings: tuple[str, ...] | None = None

    @property
    def queue(self) -> str:
        return f"{self.service}.{self.handler}"

    @property
    def routing_keys(self) -> tuple[str, ...]:
        if self.bindings is not None:
            return self.bindings
        return tuple(message.routing_key for message in self.messages)

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dlq"

    @property
    def parking_queue(self) -> str:
        return f"{self.queue}.parked"

    def retry_queue(self, attempt: int) -> str:
        """The delay queue for retry number `attempt` (1-based); later attempts share the last."""
        return f"{self.queue}.retry.{min(max(attempt, 1), RETRY_TIERS)}"


CONSUMERS: tuple[Consumer, ...] = (
    Consumer("order", "process_order", (PlaceOrder,), step=Step.PROCESS_ORDER),
    Consumer(
        "order",
        "update_order_status",
        (OrderCreateFailed, PaymentRefunded),
        step=Step.UPDATE_ORDER_STATUS,
    ),
    Consumer("order", "conclude_saga", (InventoryReserved, SagaCompensationFailed)),
    Consumer(
        "order",
        "record_transaction",
        (PaymentDebited, PaymentDebitFailed, InventoryReserveFailed, InventoryReleased),
    ),
    Consumer("payment", "debit_payment", (OrderCreated,), step=Step.PROCESS_PAYMENT),
    Consumer(
        "payment",
        "refund_payment",
        (PaymentDebitFailed, InventoryReleased),
        step=Step.PROCESS_REFUND,
    ),
    Consumer("inventory", "reserve_inventory", (PaymentDebited,), step=Step.RESERVE_INVENTORY),
    Consumer(
        "inventory", "release_inventory", (InventoryReserveFailed,), step=Step.RELEASE_INVENTORY
    ),
    # A cancelled saga: each service undoes what it did.
    Consumer("payment", "cancel_payment", (SagaCancelled,), step=Step.PROCESS_REFUND),
    Consumer("inventory", "cancel_reservation", (SagaCancelled,), step=Step.RELEASE_INVENTORY),
    # The saga history: every message on the exchange, whatever its type.
    Consumer("saga_log", "record", (SagaMessage,), bindings=("#",)),
)


def consumer(service: str, handler: str) -> Consumer:
    """The consumer named `<service>.<handler>`."""
    for candidate in CONSUMERS:
        if candidate.service == service and candidate.handler == handler:
            return candidate
    raise KeyError(f"no consumer {service}.{handler} in contracts.topology.CONSUMERS")


def work_queue_arguments(consumer: Consumer) -> dict[str, Any]:
    """Arguments of a work queue; identical in every declaration or RabbitMQ refuses it."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": consumer.dead_letter_queue,
    }


def retry_queue_arguments(consumer: Consumer) -> dict[str, Any]:
    """Arguments of a retry tier queue: expired messages go back to the work queue."""
    return {
        "x-queue-type": "classic",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": consumer.queue,
    }


HOLDING_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum"}
