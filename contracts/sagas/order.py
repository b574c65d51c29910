"""The order saga (AWS "Managing Long Lived Transactions" sample, SEED_BEHAVIOUR.md):
its messages and its declaration.

An order goes through ProcessOrder (order), ProcessPayment (payment) and ReserveInventory
(inventory); when a step fails, ReleaseInventory, ProcessRefund and UpdateOrderStatus undo
what was done. `PlaceOrder` is the sample's order JSON, exactly as a client publishes it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.declaration import Participant, Reaction, Saga, Step
from contracts.envelope import (
    Command,
    CompensationFailed,
    Event,
    Name,
    SagaId,
    Text,
    derived_id,
)
from contracts.faults import DemoFault

Money = Annotated[Decimal, Field(max_digits=14, decimal_places=2)]
#: The largest total a payment row holds (NUMERIC(14, 2)).
MAX_TOTAL = Decimal("999999999999.99")
Ref = Annotated[str, Field(max_length=64)]

SAGA_FAILED = "SagaFailed"


def transaction_id(order_id: str, kind: str) -> uuid.UUID:
    """The sample's deterministic transaction id, so that a retried write overwrites itself."""
    return derived_id(order_id, kind)


class OrderItem(BaseModel):
    """One line of an order, as the sample sends it (numbers are read as exact decimals)."""

    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)

    item_id: Annotated[str, Field(min_length=1, max_length=64)]
    qty: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=4)]
    description: Annotated[str, Field(max_length=500)] = ""
    unit_price: Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=4)]


class PlaceOrder(Command):
    """The input that starts an order saga: the sample's order payload, with no envelope.

    Consumers read it tolerantly (unknown fields are ignored, numbers may be JSON floats);
    every field of the sample is required.
    """

    routing_key: ClassVar[str] = "order.placed"
    saga_id_field: ClassVar[str] = "order_id"

    order_id: SagaId
    order_date: datetime
    customer_id: Annotated[str, Field(min_length=1, max_length=64)]
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=1000)]

    @field_validator("items")
    @classmethod
    def _total_fits(cls, items: list[OrderItem]) -> list[OrderItem]:
        # Checked here, so that an order no payment could hold is rejected (OrderRejected)
        # rather than retried against the database until it is parked.
        total = sum((item.qty * item.unit_price for item in items), Decimal(0))
        if total > MAX_TOTAL:
            raise ValueError(f"the order's total {total:.2f} exceeds {MAX_TOTAL}")
        return items


class OrderEvent(Event):
    """An event of the order saga: it repeats the saga id as `order_id`."""

    saga_id_field: ClassVar[str] = "order_id"
    order_id: SagaId


class OrderCreated(OrderEvent):
    """ProcessOrder stored the order with status New."""

    routing_key: ClassVar[str] = "order.created"
    type: Literal["OrderCreated"] = "OrderCreated"
    order_date: datetime
    customer_id: Ref
    items: list[OrderItem]


class OrderCreateFailed(OrderEvent):
    """ProcessOrder stored the order, then failed: the order service compensates."""

    routing_key: ClassVar[str] = "order.create_failed"
    type: Literal["OrderCreateFailed"] = "OrderCreateFailed"
    error: Text


class PaymentDebited(OrderEvent):
    """ProcessPayment wrote the Debit. Carries the items on, for ReserveInventory."""

    routing_key: ClassVar[str] = "payment.debited"
    type: Literal["PaymentDebited"] = "PaymentDebited"
    transaction_id: uuid.UUID
    amount: Money
    items: list[OrderItem]


class PaymentDebitFailed(OrderEvent):
    """ProcessPayment wrote the Debit, then failed: the payment service refunds it."""

    routing_key: ClassVar[str] = "payment.debit_failed"
    type: Literal["PaymentDebitFailed"] = "PaymentDebitFailed"
    transaction_id: uuid.UUID
    amount: Money
    error: Text


class InventoryReserved(OrderEvent):
    """ReserveInventory wrote the Reserve: the last forward step succeeded."""

    routing_key: ClassVar[str] = "inventory.reserved"
    type: Literal["InventoryReserved"] = "InventoryReserved"
    transaction_id: uuid.UUID
    items: list[Ref]


class InventoryReserveFailed(OrderEvent):
    """ReserveInventory wrote the Reserve, then failed: the inventory service releases it."""

    routing_key: ClassVar[str] = "inventory.reserve_failed"
    type: Literal["InventoryReserveFailed"] = "InventoryReserveFailed"
    transaction_id: uuid.UUID
    error: Text


class InventoryReleased(OrderEvent):
    """ReleaseInventory undid the Reserve (`transaction_id` is None if there was none)."""

    routing_key: ClassVar[str] = "inventory.released"
    type: Literal["InventoryReleased"] = "InventoryReleased"
    transaction_id: uuid.UUID | None
    cause: Text


class PaymentRefunded(OrderEvent):
    """ProcessRefund credited the Debit back (`transaction_id` is None if there was none)."""

    routing_key: ClassVar[str] = "payment.refunded"
    type: Literal["PaymentRefunded"] = "PaymentRefunded"
    transaction_id: uuid.UUID | None
    amount: Money
    cause: Text


class InventoryReleaseFailed(CompensationFailed, OrderEvent):
    """ReleaseInventory failed: the chain stops, a human must look."""

    routing_key: ClassVar[str] = "inventory.release_failed"
    type: Literal["InventoryReleaseFailed"] = "InventoryReleaseFailed"


class PaymentRefundFailed(CompensationFailed, OrderEvent):
    """ProcessRefund failed: the chain stops, a human must look."""

    routing_key: ClassVar[str] = "payment.refund_failed"
    type: Literal["PaymentRefundFailed"] = "PaymentRefundFailed"


class OrderStatusUpdateFailed(CompensationFailed, OrderEvent):
    """UpdateOrderStatus failed: the chain stops, a human must look."""

    routing_key: ClassVar[str] = "order.status_update_failed"
    type: Literal["OrderStatusUpdateFailed"] = "OrderStatusUpdateFailed"


class OrderSucceeded(OrderEvent):
    """Terminal: every forward step succeeded (the sample's "success" notification)."""

    routing_key: ClassVar[str] = "order.succeeded"
    type: Literal["OrderSucceeded"] = "OrderSucceeded"
    order_status: Name


class OrderFailed(OrderEvent):
    """Terminal: the saga failed (`error` is always SagaFailed; `cause` is the step error
    that started the compensations; `compensation_error` is set when one failed too)."""

    routing_key: ClassVar[str] = "order.failed"
    type: Literal["OrderFailed"] = "OrderFailed"
    order_status: Name
    error: Literal["SagaFailed"] = "SagaFailed"
    cause: Text
    failed_compensation: Name | None = None
    compensation_error: Text | None = None


class OrderCancelled(OrderEvent):
    """The order service gave up on a saga that had no outcome in time: a step was silent
    for longer than the step timeout, or the saga outlived its deadline. Every service
    compensates what it did; a later event of this saga is compensated, never applied."""

    routing_key: ClassVar[str] = "order.cancelled"
    type: Literal["OrderCancelled"] = "OrderCancelled"
    reason: Name
    waited_seconds: float


class OrderStatusUpdated(OrderEvent):
    """UpdateOrderStatus ran for a saga that had already ended (a redriven compensation
    reached it, or the refund of a cancelled saga): the order is now `order_status`; no
    second terminal event is published."""

    routing_key: ClassVar[str] = "order.status_updated"
    type: Literal["OrderStatusUpdated"] = "OrderStatusUpdated"
    order_status: Name


class OrderRejected(OrderEvent):
    """The order JSON published on order.placed was not a valid order: no saga started.
    `fields` names what is wrong (e.g. "items", "items.0.qty"); `reason` says how."""

    routing_key: ClassVar[str] = "order.rejected"
    type: Literal["OrderRejected"] = "OrderRejected"
    reason: Text
    fields: Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=50)]


ORDER = Saga(
    name="order",
    title="Order saga",
    starts_with=PlaceOrder,
    participants=(
        Participant(
            "order",
            steps=(
                Step(
                    "ProcessOrder",
                    queue="process_order",
                    on=(PlaceOrder,),
                    succeeded=(OrderCreated,),
                    failed=(OrderCreateFailed,),
                    also=(OrderRejected,),
                    doc="store the order as New and start its saga",
                ),
                Step(
                    "UpdateOrderStatus",
                    queue="update_order_status",
                    compensates="ProcessOrder",
                    on=(OrderCreateFailed, PaymentRefunded),
                    succeeded=(OrderFailed, OrderStatusUpdated),
                    compensation_failed=OrderStatusUpdateFailed,
                    doc="set the order Pending and end the saga as failed",
                ),
            ),
            reactions=(
                Reaction(
                    "conclude_saga",
                    on=(
                        InventoryReserved,
                        InventoryReleaseFailed,
                        PaymentRefundFailed,
                        OrderStatusUpdateFailed,
                    ),
                    emits=(OrderSucceeded, OrderFailed),
                    doc="end the saga: succeeded once the inventory is reserved, failed once "
                    "a compensation has failed",
                ),
                Reaction(
                    "record_transaction",
                    on=(
                        PaymentDebited,
                        PaymentDebitFailed,
                        InventoryReserveFailed,
                        InventoryReleased,
                    ),
                    doc="remember the payment and inventory transactions, for GET /orders",
                ),
            ),
            on_deadline=(OrderCancelled, OrderFailed),
        ),
        Participant(
            "payment",
            steps=(
                Step(
                    "ProcessPayment",
                    queue="debit_payment",
                    on=(OrderCreated,),
                    succeeded=(PaymentDebited,),
                    failed=(PaymentDebitFailed,),
                    doc="debit the order's total",
                ),
                Step(
                    "ProcessRefund",
                    queue="refund_payment",
                    compensates="ProcessPayment",
                    on=(PaymentDebitFailed, InventoryReleased),
                    succeeded=(PaymentRefunded,),
                    compensation_failed=PaymentRefundFailed,
                    doc="credit the stored Debit back",
                ),
            ),
            reactions=(
                Reaction(
                    "cancel_payment",
                    on=(OrderCancelled,),
                    emits=(PaymentRefunded,),
                    runs="ProcessRefund",
                    doc="refund a cancelled saga's Debit and apply no later one",
                ),
                Reaction(
                    "order_succeeded",
                    on=(OrderSucceeded,),
                    doc="remember the saga succeeded: nothing refunds its Debit after that",
                ),
            ),
        ),
        Participant(
            "inventory",
            steps=(
                Step(
                    "ReserveInventory",
                    queue="reserve_inventory",
                    on=(PaymentDebited,),
                    succeeded=(InventoryReserved,),
                    failed=(InventoryReserveFailed,),
                    # A debit that arrives after the saga was cancelled is answered so
                    # that it gets refunded.
                    also=(InventoryReleased,),
                    doc="reserve the order's items",
                ),
                Step(
                    "ReleaseInventory",
                    queue="release_inventory",
                    compensates="ReserveInventory",
                    on=(InventoryReserveFailed,),
                    succeeded=(InventoryReleased,),
                    compensation_failed=InventoryReleaseFailed,
                    doc="release the stored Reserve",
                ),
            ),
            reactions=(
                Reaction(
                    "cancel_reservation",
                    on=(OrderCancelled,),
                    emits=(InventoryReleased,),
                    runs="ReleaseInventory",
                    doc="release a cancelled saga's Reserve and reserve nothing later",
                ),
                Reaction(
                    "order_succeeded",
                    on=(OrderSucceeded,),
                    doc="remember the saga succeeded: nothing releases its Reserve after that",
                ),
            ),
        ),
    ),
    succeeded=OrderSucceeded,
    failed=OrderFailed,
    cancelled=OrderCancelled,
    rejected=OrderRejected,
    notifications=(OrderRejected, OrderStatusUpdated),
    faults=(
        # A longer prefix first: "11..." also starts with "1".
        DemoFault("UpdateOrderStatus", "ErrUpdateOrderStatus", "prefix", ("11",)),
        DemoFault("ProcessOrder", "ErrProcessOrder", "prefix", ("1",)),
        DemoFault("ProcessRefund", "ErrProcessRefund", "prefix", ("22",)),
        DemoFault("ProcessPayment", "ErrProcessPayment", "prefix", ("2",)),
        DemoFault("ReleaseInventory", "ErrReleaseInventory", "prefix", ("33",)),
        DemoFault("ReserveInventory", "ErrReserveInventory", "prefix", ("3",)),
    ),
    roles={
        "order": "takes orders (ProcessOrder), ends every order saga, and undoes the order "
        "(UpdateOrderStatus)",
        "payment": "debits the order's total (ProcessPayment) and refunds it (ProcessRefund)",
        "inventory": "reserves the items (ReserveInventory) and releases them (ReleaseInventory)",
    },
)
