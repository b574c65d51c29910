"""The order service's rules: ProcessOrder, its compensation UpdateOrderStatus, and how a
saga ends. Pure: no database, no broker."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from contracts import (
    Event,
    Faults,
    OrderCancelled,
    OrderCreated,
    OrderCreateFailed,
    OrderFailed,
    OrderItem,
    OrderStatusUpdated,
    OrderStatusUpdateFailed,
    OrderSucceeded,
    PlaceOrder,
)

SERVICE = "order"
PROCESS_ORDER = "ProcessOrder"
UPDATE_ORDER_STATUS = "UpdateOrderStatus"


class OrderStatus(StrEnum):
    NEW = "New"
    PENDING = "Pending"


class SagaOutcome(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Order:
    order_id: str
    order_date: datetime
    customer_id: str
    order_status: str
    items: list[dict[str, Any]]


def process_order(command: PlaceOrder, *, causation_id: str, faults: Faults) -> tuple[Order, Event]:
    """ProcessOrder: the order is stored as New, then the step fails if a fault says so
    (the sample writes first and fails after, so the compensation has a row to update)."""
    order = Order(
        order_id=command.order_id,
        order_date=command.order_date,
        customer_id=command.customer_id,
        order_status=OrderStatus.NEW,
        items=[item.model_dump(mode="json") for item in command.items],
    )
    event: Event
    error = faults.error(PROCESS_ORDER, command.order_id)
    if error is not None:
        event = OrderCreateFailed.caused_by(
            causation_id, producer=SERVICE, order_id=command.order_id, error=error
        )
    else:
        event = OrderCreated.caused_by(
            causation_id,
            producer=SERVICE,
            order_id=command.order_id,
            order_date=command.order_date,
            customer_id=command.customer_id,
            items=[OrderItem.model_validate(item) for item in command.items],
        )
    return order, event


def update_order_status(
    order_id: str, *, cause: str, causation_id: str, faults: Faults
) -> OrderStatusUpdateFailed | None:
    """UpdateOrderStatus: the order goes to Pending; returns the failure notification if
    the step then fails on purpose, else None (the saga has been fully compensated)."""
    error = faults.error(UPDATE_ORDER_STATUS, order_id)
    if error is None:
        return None
    return OrderStatusUpdateFailed.caused_by(
        causation_id,
        producer=SERVICE,
        order_id=order_id,
        step=UPDATE_ORDER_STATUS,
        error=error,
        cause=cause,
    )


def status_updated(order_id: str, *, causation_id: str) -> OrderStatusUpdated:
    """UpdateOrderStatus ran after its saga had ended (a redrive): say so, end nothing."""
    return OrderStatusUpdated.caused_by(
        causation_id, producer=SERVICE, order_id=order_id, order_status=OrderStatus.PENDING
    )


def cancel_saga(
    order_id: str, *, reason: str, waited_seconds: float, causation_id: str
) -> tuple[OrderCancelled, OrderFailed]:
    """The order service gives up on a saga that had no outcome in time: every service
    compensates (OrderCancelled) and the saga ends failed, its order Pending."""
    cancelled = OrderCancelled.caused_by(
        causation_id,
        producer=SERVICE,
        order_id=order_id,
        reason=reason,
        waited_seconds=round(waited_seconds, 3),
    )
    return cancelled, saga_failed(
        order_id, order_status=OrderStatus.PENDING, cause=reason, causation_id=causation_id
    )


def saga_succeeded(order_id: str, *, order_status: str, causation_id: str) -> OrderSucceeded:
    return OrderSucceeded.caused_by(
        causation_id, producer=SERVICE, order_id=order_id, order_status=order_status
    )


def saga_failed(
    order_id: str,
    *,
    order_status: str,
    cause: str,
    causation_id: str,
    failed_compensation: str | None = None,
    compensation_error: str | None = None,
) -> OrderFailed:
    return OrderFailed.caused_by(
        causation_id,
        producer=SERVICE,
        order_id=order_id,
        order_status=order_status,
        cause=cause,
        failed_compensation=failed_compensation,
        compensation_error=compensation_error,
    )
