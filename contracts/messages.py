"""Every message the saga exchanges: the one source of truth for names and fields.

Events are facts in the past tense. Each carries the envelope of `Event`: a `message_id`
derived from the message that caused it (a retried handler emits the same id again), the
saga id (the order_id) as `correlation_id`, the `causation_id`, its `type`, the producing
service, when it happened and a `schema_version`.

`PlaceOrder` is the one command: the sample's order JSON exactly as a client publishes it,
with no envelope, so that it can be typed by hand into the RabbitMQ management UI.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

#: Namespace of every id we derive (transaction ids and message ids), from the sample.
NAMESPACE = uuid.UUID("8b03bc51-6db8-4d24-9e5b-0f8245f5f42e")

SCHEMA_VERSION = 1

OrderId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Money = Annotated[Decimal, Field(max_digits=14, decimal_places=2)]


class Step(StrEnum):
    """The sample's steps: three forward steps and their compensations."""

    PROCESS_ORDER = "ProcessOrder"
    PROCESS_PAYMENT = "ProcessPayment"
    RESERVE_INVENTORY = "ReserveInventory"
    RELEASE_INVENTORY = "ReleaseInventory"
    PROCESS_REFUND = "ProcessRefund"
    UPDATE_ORDER_STATUS = "UpdateOrderStatus"


class BusinessError(StrEnum):
    """The sample's six custom errors; never retried, always answered by an event."""

    PROCESS_ORDER = "ErrProcessOrder"
    UPDATE_ORDER_STATUS = "ErrUpdateOrderStatus"
    PROCESS_PAYMENT = "ErrProcessPayment"
    PROCESS_REFUND = "ErrProcessRefund"
    RESERVE_INVENTORY = "ErrReserveInventory"
    RELEASE_INVENTORY = "ErrReleaseInventory"


#: The forward steps in order, and the compensations in the order they undo them.
FORWARD_STEPS: tuple[Step, ...] = (Step.PROCESS_ORDER, Step.PROCESS_PAYMENT, Step.RESERVE_INVENTORY)
COMPENSATION_STEPS: tuple[Step, ...] = (
    Step.RELEASE_INVENTORY,
    Step.PROCESS_REFUND,
    Step.UPDATE_ORDER_STATUS,
)

#: The error each step raises when it fails.
STEP_ERRORS: dict[Step, BusinessError] = {
    Step.PROCESS_ORDER: BusinessError.PROCESS_ORDER,
    Step.UPDATE_ORDER_STATUS: BusinessError.UPDATE_ORDER_STATUS,
    Step.PROCESS_PAYMENT: BusinessError.PROCESS_PAYMENT,
    Step.PROCESS_REFUND: BusinessError.PROCESS_REFUND,
    Step.RESERVE_INVENTORY: BusinessError.RESERVE_INVENTORY,
    Step.RELEASE_INVENTORY: BusinessError.RELEASE_INVENTORY,
}

SAGA_FAILED = "SagaFailed"


def transaction_id(order_id: str, kind: str) -> uuid.UUID:
    """The sample's deterministic transaction id, so that a retried write overwrites itself."""
    return uuid.uuid5(NAMESPACE, f"{order_id}|{kind}")


class OrderItem(BaseModel):
    """One line of an order, as the sample sends it (numbers are read as exact decimals)."""

    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)

    item_id: Annotated[str, Field(min_length=1, max_length=64)]
    qty: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=4)]
    description: Annotated[str, Field(max_length=500)] = ""
    unit_price: Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=4)]


class PlaceOrder(BaseModel):
    """The input that starts a saga: the sample's order payload, with no envelope.

    Consumers read it tolerantly (unknown fields are ignored, numbers may be JSON floats);
    every field of the sample is required.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    routing_key: ClassVar[str] = "order.placed"

    order_id: OrderId
    order_date: datetime
    customer_id: Annotated[str, Field(min_length=1, max_length=64)]
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=1000)]

    def inbox_key(self) -> str:
        # No envelope, and a client may give each publish a new id: the order id is what
        # must not be handled twice.
        return f"PlaceOrder:{self.order_id}"


class Event(BaseModel):
    """The envelope every published event carries.

    Published events are frozen and forbid unknown fields; `decode_event` reads them
    tolerantly. Build them with `caused_by`, which fills the envelope from the cause.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    routing_key: ClassVar[str]

    type: str
    message_id: uuid.UUID
    correlation_id: str
    causation_id: str
    producer: str
    occurred_at: datetime
    schema_version: int = SCHEMA_VERSION
    order_id: OrderId

    def inbox_key(self) -> str:
        return str(self.message_id)

    @classmethod
    def caused_by(cls, causation_id: str, *, producer: str, **fields: Any) -> Self:
        """The event that the message `causation_id` caused; the same cause gives the same id."""
        type_name = cls.model_fields["type"].default
        return cls(
            type=type_name,
            message_id=uuid.uuid5(NAMESPACE, f"{causation_id}|{type_name}"),
            correlation_id=fields["order_id"],
            causation_id=causation_id,
            producer=producer,
            occurred_at=datetime.now(UTC),
            **fields,
        )


class OrderCreated(Event):
    """ProcessOrder stored the order with status New."""

    routing_key: ClassVar[str] = "order.created"
    type: Literal["OrderCreated"] = "OrderCreated"
    order_date: datetime
    customer_id: str
    items: list[OrderItem]


class OrderCreateFailed(Event):
    """ProcessOrder stored the order, then failed: the order service compensates."""

    routing_key: ClassVar[str] = "order.create_failed"
    type: Literal["OrderCreateFailed"] = "OrderCreateFailed"
    error: str


class PaymentDebited(Event):
    """ProcessPayment wrote the Debit. Carries the items on, for ReserveInventory."""

    routing_key: ClassVar[str] = "payment.debited"
    type: Literal["PaymentDebited"] = "PaymentDebited"
    transaction_id: uuid.UUID
    amount: Money
    items: list[OrderItem]


class PaymentDebitFailed(Event):
    """ProcessPayment wrote the Debit, then failed: the payment service refunds it."""

    routing_key: ClassVar[str] = "payment.debit_failed"
    type: Literal["PaymentDebitFailed"] = "PaymentDebitFailed"
    transaction_id: uuid.UUID
    amount: Money
    error: str


class InventoryReserved(Event):
    """ReserveInventory wrote the Reserve: the last forward step succeeded."""

    routing_key: ClassVar[str] = "inventory.reserved"
    type: Literal["InventoryReserved"] = "InventoryReserved"
    transaction_id: uuid.UUID
    items: list[str]


class InventoryReserveFailed(Event):
    """ReserveInventory wrote the Reserve, then failed: the inventory service releases it."""

    routing_key: ClassVar[str] = "inventory.reserve_failed"
    type: Literal["InventoryReserveFailed"] = "InventoryReserveFailed"
    transaction_id: uuid.UUID
    error: str


class InventoryReleased(Event):
    """ReleaseInventory undid the Reserve (`transaction_id` is None if there was none)."""

    routing_key: ClassVar[str] = "inventory.released"
    type: Literal["InventoryReleased"] = "InventoryReleased"
    transaction_id: uuid.UUID | None
    cause: str


class PaymentRefunded(Event):
    """ProcessRefund credited the Debit back (`transaction_id` is None if there was none)."""

    routing_key: ClassVar[str] = "payment.refunded"
    type: Literal["PaymentRefunded"] = "PaymentRefunded"
    transaction_id: uuid.UUID | None
    amount: Money
    cause: str


class SagaCompensationFailed(Event):
    """A compensation failed: the chain stops here and a human must look (the sample's
    "failed" notification, naming the error)."""

    routing_key: ClassVar[str] = "saga.compensation_failed"
    type: Literal["SagaCompensationFailed"] = "SagaCompensationFailed"
    step: str
    error: str
    cause: str
    transaction_id: uuid.UUID | None
    attempts: int = 1


class OrderSucceeded(Event):
    """Terminal: every forward step succeeded (the sample's "success" notification)."""

    routing_key: ClassVar[str] = "order.succeeded"
    type: Literal["OrderSucceeded"] = "OrderSucceeded"
    order_status: str


class OrderFailed(Event):
    """Terminal: the saga failed (`error` is always SagaFailed; `cause` is the step error
    that started the compensations; `compensation_error` is set when one failed too)."""

    routing_key: ClassVar[str] = "order.failed"
    type: Literal["OrderFailed"] = "OrderFailed"
    order_status: str
    error: Literal["SagaFailed"] = "SagaFailed"
    cause: str
    failed_compensation: str | None = None
    compensation_error: str | None = None


class MessageParked(Event):
    """A message's retry budget is spent: it waits on `queue`.parked for an operator.

    Published by the runtime straight away (not through the outbox: the database may be
    why the message could not be handled)."""

    routing_key: ClassVar[str] = "saga.message_parked"
    type: Literal["MessageParked"] = "MessageParked"
    queue: str
    step: str | None
    parked_type: str | None
    parked_message_id: str | None
    error: str
    attempts: int


class SagaCancelled(Event):
    """The order service gave up on a saga that had no outcome in time: a step was silent
    for longer than the step timeout, or the saga outlived its deadline. Every service
    compensates what it did; a later event of this saga is compensated, never applied."""

    routing_key: ClassVar[str] = "saga.cancelled"
    type: Literal["SagaCancelled"] = "SagaCancelled"
    reason: str
    waited_seconds: float


class OrderStatusUpdated(Event):
    """UpdateOrderStatus ran for a saga that had already ended (a redriven compensation
    reached it): the order is now `order_status`; no second terminal event is published."""

    routing_key: ClassVar[str] = "order.status_updated"
    type: Literal["OrderStatusUpdated"] = "OrderStatusUpdated"
    order_status: str


class OrderRejected(Event):
    """The order JSON published on order.placed was not a valid order: no saga started.
    `fields` names what is wrong (e.g. "items", "items.0.qty"); `reason` says how."""

    routing_key: ClassVar[str] = "order.rejected"
    type: Literal["OrderRejected"] = "OrderRejected"
    reason: str
    fields: list[str]


class SagaMessage(BaseModel):
    """Any message on `saga.events`, read as the saga history reads it: whatever carries an
    order_id belongs to that saga; every other field is kept as it came."""

    model_config = ConfigDict(frozen=True, extra="allow")

    routing_key: ClassVar[str] = "#"

    order_id: OrderId
    type: Annotated[str, Field(min_length=1, max_length=128)] = "PlaceOrder"
    message_id: Annotated[str, Field(max_length=255)] | None = None
    causation_id: Annotated[str, Field(max_length=255)] | None = None
    producer: Annotated[str, Field(max_length=64)] | None = None
    occurred_at: datetime | None = None

    def inbox_key(self) -> str:
        return self.message_id or f"{self.type}:{self.order_id}"


EVENT_TYPES: tuple[type[Event], ...] = (
    OrderCreated,
    OrderCreateFailed,
    PaymentDebited,
    PaymentDebitFailed,
    InventoryReserved,
    InventoryReserveFailed,
    InventoryReleased,
    PaymentRefunded,
    SagaCompensationFailed,
    OrderSucceeded,
    OrderFailed,
    MessageParked,
    OrderRejected,
    OrderStatusUpdated,
    SagaCancelled,
)

EVENTS_BY_NAME: dict[str, type[Event]] = {
    event.model_fields["type"].default: event for event in EVENT_TYPES
}
EVENTS_BY_ROUTING_KEY: dict[str, type[Event]] = {event.routing_key: event for event in EVENT_TYPES}

#: What a terminal event looks like to a client waiting for a saga's outcome.
TERMINAL_EVENTS: tuple[type[Event], ...] = (OrderSucceeded, OrderFailed)
