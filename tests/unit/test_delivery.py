"""The delivery path (decode, inbox, dispatch), in memory through faststream's
TestRabbitBroker, with a fake unit of work standing in for PostgreSQL."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import pytest
from faststream.rabbit import RabbitBroker, TestRabbitBroker

from contracts import (
    InventoryReleased,
    OrderCreated,
    PaymentDebitFailed,
    PlaceOrder,
    consumer,
    decode,
    encode,
    transaction_id,
)
from contracts.samples import sample_order
from saga_log.runtime import (
    DeliveryHandler,
    Received,
    RetryPolicy,
    Subscription,
    Trust,
    subscribe,
)
from tests.unit.fakes import FakeDatabase, FakeUnitOfWork


def wire(
    service: str, handler_name: str
) -> tuple[RabbitBroker, DeliveryHandler, list[tuple[Any, str]]]:
    seen: list[tuple[Any, str]] = []

    async def handler(uow: Any, batch: list[Received[Any]]) -> None:
        seen.extend((received.message, received.message_id) for received in batch)

    db = FakeDatabase()
    broker = RabbitBroker()
    delivery = DeliveryHandler(
        Subscription(consumer(service, handler_name), handler),
        broker=broker,
        unit_of_work=lambda: FakeUnitOfWork(db),  # type: ignore[arg-type,return-value]
        retry_policy=RetryPolicy(),
        service=service,
        trust=Trust(own=service),
    )
    subscribe(broker, delivery, prefetch=10)
    return broker, delivery, seen


def order_created() -> OrderCreated:
    order = decode(PlaceOrder, json.dumps(sample_order("ok")).encode())
    return OrderCreated.caused_by(
        "cause",
        producer="order",
        order_id=order.order_id,
        order_date=order.order_date,
        customer_id=order.customer_id,
        items=order.items,
    )


async def test_duplicate_order_created_is_handled_once() -> None:
    broker, delivery, seen = wire("payment", "debit_payment")
    event = order_created()
    async with TestRabbitBroker(broker) as test_broker:
        for _ in range(3):
            await test_broker.publish(encode(event), queue=delivery.consumer.queue, user_id="order")
    assert [(type(message), message_id) for message, message_id in seen] == [
        (OrderCreated, str(event.message_id))
    ]
    assert (delivery.stats.handled, delivery.stats.duplicates) == (1, 2)


async def test_a_queue_with_two_event_types_dispatches_by_type() -> None:
    broker, delivery, seen = wire("payment", "refund_payment")
    failed = PaymentDebitFailed.caused_by(
        "a",
        producer="payment",
        order_id="2x",
        transaction_id=transaction_id("2x", "Debit"),
        amount=Decimal("1.00"),
        error="ErrProcessPayment",
    )
    released = InventoryReleased.caused_by(
        "b", producer="inventory", order_id="3x", transaction_id=None, cause="ErrReserveInventory"
    )
    async with TestRabbitBroker(broker) as test_broker:
        await test_broker.publish(encode(failed), queue=delivery.consumer.queue, user_id="payment")
        await test_broker.publish(
            encode(released), queue=delivery.consumer.queue, user_id="inventory"
        )
    assert [type(message) for message, _ in seen] == [PaymentDebitFailed, InventoryReleased]


async def test_the_same_order_placed_twice_with_different_message_ids_is_one_saga() -> None:
    broker, delivery, seen = wire("order", "process_order")
    body = json.dumps(sample_order("ok")).encode()
    async with TestRabbitBroker(broker) as test_broker:
        await test_broker.publish(body, queue=delivery.consumer.queue, message_id="one")
        await test_broker.publish(body, queue=delivery.consumer.queue, message_id="two")
    assert len(seen) == 1
    assert seen[0][1] == f"PlaceOrder:{sample_order('ok')['order_id']}"


def test_retry_delays_follow_the_samples_policy_with_full_jitter() -> None:
    policy = RetryPolicy()
    assert [policy.ceiling(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 8.0]
    rng = random.Random(7)
    delays = [policy.delay(2, rng) for _ in range(500)]
    assert all(0 <= delay <= 4.0 for delay in delays)
    assert max(delays) > 3.5 and min(delays) < 0.5


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        (None, 1.0),  # first delivery
        ({"x-delivery-count": 1}, 2.0),
        ({"x-delivery-count": 3}, 4.0),
        ({"x-delivery-count": 19}, 5.0),  # capped
        ({"x-delivery-count": "junk"}, 1.0),  # a header anyone could have set
        ({"x-delivery-count": -7}, 1.0),
    ],
)
def test_a_message_that_could_not_be_settled_waits_longer_each_time_it_comes_back(
    headers: dict[str, object] | None, seconds: float
) -> None:
    from contracts.topology import DELIVERY_LIMIT
    from saga_log.runtime.delivery import requeue_delay

    assert requeue_delay(headers) == seconds
    # The delivery limit's worth of returns outlasts a node's restart (30 s here).
    total = sum(requeue_delay({"x-delivery-count": n}) for n in range(DELIVERY_LIMIT))
    assert total >= 60
