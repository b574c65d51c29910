"""Deliveries handled in batches (group commit), with fakes for the broker and the database:
what a batch changes is how many transactions there are, never what a message does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import aiormq
import pytest

from contracts import (
    OrderCreated,
    PaymentDebitFailed,
    PaymentRefundFailed,
    consumer,
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
    one_by_one,
    one_per_saga,
)
from tests.unit.fakes import FakeDatabase, FakeUnitOfWork

PAYMENT = Trust(own="payment")


class FakeRaw:
    """Just enough of aio-pika's IncomingMessage."""

    def __init__(
        self, body: bytes, *, headers: dict[str, Any] | None = None, user_id: str | None = None
    ) -> None:
        self.body = body
        self.headers = headers or {}
        # The declared producer of what it carries, as the broker would have checked it.
        self.user_id = user_id if user_id is not None else _producer_of(body)
        self.routing_key = "order.created"
        self.redelivered = False
        self.type = _type_of(body)
        self.message_id = None
        self.content_type = "application/json"
        self.correlation_id = None
        self.timestamp = None
        self.acks = 0
        self.nacks = 0

    async def ack(self) -> None:
        self.acks += 1

    async def nack(self, requeue: bool = True) -> None:
        self.nacks += 1


def _producer_of(body: bytes) -> str | None:
    try:
        producer = json.loads(body).get("producer")
    except ValueError:
        return None
    return producer if isinstance(producer, str) else None


def _type_of(body: bytes) -> str | None:
    try:
        kind = json.loads(body).get("type")
    except ValueError:
        return None
    return kind if isinstance(kind, str) else None


class FakeBroker:
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    async def publish(self, body: bytes, **kwargs: Any) -> Any:
        self.published.append({"body": body, **kwargs})
        return aiormq.spec.Basic.Ack()


def order_created(order_id: str) -> bytes:
    order = sample_order("ok", order_id=order_id)
    return encode(
        OrderCreated.caused_by(
            f"cause-{order_id}",
            producer="order",
            order_id=order_id,
            order_date=order["order_date"],
            customer_id=order["customer_id"],
            items=order["items"],
        )
    )


def wire(
    *, batch_size: int = 50, fail_on: str | None = None, linger: float = 0.0
) -> tuple[DeliveryHandler, FakeDatabase, FakeBroker, list[list[str]]]:
    db, broker = FakeDatabase(), FakeBroker()
    batches: list[list[str]] = []

    async def handler(uow: Any, batch: Sequence[Received[Any]]) -> None:
        batches.append([received.saga_id for received in batch])
        for received in batch:
            if received.saga_id == fail_on:
                raise RuntimeError(f"cannot handle {received.saga_id}")
            uow.work.append(received.saga_id)

    delivery = DeliveryHandler(
        Subscription(consumer("payment", "debit_payment"), handler),
        broker=broker,  # type: ignore[arg-type]
        unit_of_work=lambda: FakeUnitOfWork(db),  # type: ignore[arg-type,return-value]
        retry_policy=RetryPolicy(),
        service="payment",
        trust=PAYMENT,
        batch_size=batch_size,
        linger=linger,
    )
    return delivery, db, broker, batches


async def test_concurrent_deliveries_share_transactions_and_are_each_acked_once() -> None:
    delivery, db, _, batches = wire()
    raws = [FakeRaw(order_created(f"order-{i:02}")) for i in range(20)]
    await asyncio.gather(*(delivery.handle(raw) for raw in raws))
    assert [raw.acks for raw in raws] == [1] * 20
    handled = [order_id for transaction in db.transactions for order_id in transaction]
    assert sorted(handled) == [f"order-{i:02}" for i in range(20)]
    assert len(db.transactions) < 20  # what arrived together committed together
    assert max(len(batch) for batch in batches) > 1
    assert delivery.stats.handled == 20


async def test_a_lingering_consumer_gathers_what_arrives_one_by_one_into_one_transaction() -> None:
    delivery, db, _, batches = wire(linger=0.2)
    raws = [FakeRaw(order_created(f"order-{i}")) for i in range(4)]

    tasks = []
    for raw in raws:  # a low rate: each arrives alone, well apart
        tasks.append(asyncio.create_task(delivery.handle(raw)))
        await asyncio.sleep(0.02)
    await asyncio.gather(*tasks)
    assert [raw.acks for raw in raws] == [1] * 4
    assert batches == [[f"order-{i}" for i in range(4)]]
    assert len([t for t in db.transactions if t]) == 1


async def test_a_full_batch_ends_the_linger_at_once() -> None:
    # A fixed sleep would cap a lingering consumer at one batch per linger under load.
    delivery, _, _, batches = wire(batch_size=3, linger=30.0)
    raws = [FakeRaw(order_created(f"order-{i}")) for i in range(3)]

    async with asyncio.timeout(5):
        await asyncio.gather(*(delivery.handle(raw) for raw in raws))
    assert batches == [[f"order-{i}" for i in range(3)]]
    assert [raw.acks for raw in raws] == [1, 1, 1]


async def test_without_linger_a_lone_message_waits_for_nothing() -> None:
    delivery, _, _, batches = wire()
    raws = [FakeRaw(order_created(f"order-{i}")) for i in range(3)]
    for raw in raws:
        await delivery.handle(raw)  # each settled before the next arrives
    assert batches == [["order-0"], ["order-1"], ["order-2"]]
    assert [raw.acks for raw in raws] == [1, 1, 1]


async def test_a_batch_is_handled_in_saga_order_whatever_the_arrival_order() -> None:
    delivery, _, _, batches = wire()
    ids = ["order-c", "order-a", "order-b"]
    await asyncio.gather(*(delivery.handle(FakeRaw(order_created(i))) for i in ids))
    assert sorted(ids) in batches


async def test_the_same_message_twice_in_one_batch_is_handled_once() -> None:
    delivery, db, _, _ = wire()
    body = order_created("order-twice")
    first, second = FakeRaw(body), FakeRaw(body)
    await asyncio.gather(delivery.handle(first), delivery.handle(second))
    assert (first.acks, second.acks) == (1, 1)
    assert [t for t in db.transactions if t] == [["order-twice"]]
    assert (delivery.stats.handled, delivery.stats.duplicates) == (1, 1)


async def test_a_message_handled_before_is_a_duplicate_in_a_later_batch() -> None:
    delivery, db, _, _ = wire()
    await delivery.handle(FakeRaw(order_created("order-old")))
    raws = [FakeRaw(order_created(i)) for i in ("order-old", "order-new")]
    await asyncio.gather(*(delivery.handle(raw) for raw in raws))
    handled = [order_id for transaction in db.transactions for order_id in transaction]
    assert handled.count("order-old") == 1 and handled.count("order-new") == 1
    assert delivery.stats.duplicates == 1


async def test_a_failing_message_rolls_back_its_batch_and_the_others_still_commit_alone() -> None:
    delivery, db, broker, _ = wire(fail_on="order-bad")
    ids = ["order-1", "order-bad", "order-2", "order-3"]
    raws = [FakeRaw(order_created(i)) for i in ids]
    await asyncio.gather(*(delivery.handle(raw) for raw in raws))
    handled = [order_id for transaction in db.transactions for order_id in transaction]
    assert sorted(handled) == ["order-1", "order-2", "order-3"]
    assert all(len(t) == 1 for t in db.transactions)  # one by one after the rollback
    # The failing one took the usual way: a delayed retry, with its attempt count.
    (retry,) = broker.published
    assert retry["routing_key"] == "payment.debit_payment.retry.1"
    assert retry["headers"]["saga-attempt"] == 1
    assert json.loads(retry["body"])["order_id"] == "order-bad"
    assert [raw.acks for raw in raws] == [1, 1, 1, 1]
    assert delivery.stats.retried == 1 and delivery.stats.handled == 3


async def test_an_undecodable_body_is_dead_lettered_while_its_neighbours_are_batched() -> None:
    delivery, db, broker, _ = wire()
    raws = [
        FakeRaw(order_created("order-1")),
        FakeRaw(b"{not json"),
        FakeRaw(order_created("order-2")),
    ]
    await asyncio.gather(*(delivery.handle(raw) for raw in raws))
    handled = [order_id for transaction in db.transactions for order_id in transaction]
    assert sorted(handled) == ["order-1", "order-2"]
    (dead,) = broker.published
    assert dead["routing_key"] == "payment.debit_payment.dlq"
    assert dead["body"] == b"{not json"


async def test_batch_size_one_handles_every_message_in_its_own_transaction() -> None:
    delivery, db, _, batches = wire(batch_size=1)
    await asyncio.gather(*(delivery.handle(FakeRaw(order_created(f"o-{i}"))) for i in range(5)))
    assert len([t for t in db.transactions if t]) == 5
    assert all(len(batch) == 1 for batch in batches)


@pytest.mark.parametrize(
    ("order_ids", "expected"),
    [(["a", "b", "c"], True), (["a", "b", "a"], False), ([], True)],
)
def test_one_per_saga_says_whether_a_batch_may_be_applied_set_wise(
    order_ids: list[str], expected: bool
) -> None:
    class Message:
        def __init__(self, saga_id: str) -> None:
            self.saga_id = saga_id

    batch = [Received(Message(saga_id), f"m{i}", None) for i, saga_id in enumerate(order_ids)]
    assert one_per_saga(batch) is expected  # type: ignore[arg-type]


async def test_a_failed_compensation_in_a_batch_is_parked_and_its_neighbours_commit() -> None:
    db, broker = FakeDatabase(), FakeBroker()

    async def refund_one(uow: Any, received: Received[Any]) -> None:
        event = received.message
        uow.work.append(event.order_id)
        if event.order_id == "order-refund-fails":
            uow.publish(
                PaymentRefundFailed.caused_by(
                    received.message_id,
                    producer="payment",
                    order_id=event.order_id,
                    step="ProcessRefund",
                    error="ErrProcessRefund",
                    cause=event.error,
                )
            )

    async def refund(uow: Any, batch: Sequence[Received[Any]]) -> None:
        await one_by_one(uow, batch, refund_one)

    delivery = DeliveryHandler(
        Subscription(consumer("payment", "refund_payment"), refund),
        broker=broker,  # type: ignore[arg-type]
        unit_of_work=lambda: FakeUnitOfWork(db),  # type: ignore[arg-type,return-value]
        retry_policy=RetryPolicy(),
        service="payment",
        trust=PAYMENT,
        batch_size=50,
    )
    ids = ["order-a", "order-refund-fails", "order-b"]
    raws = [FakeRaw(debit_failed(i)) for i in ids]
    await asyncio.gather(*(delivery.handle(raw) for raw in raws))
    assert db.transactions == [sorted(ids)]  # one transaction, the failure included
    (parked,) = broker.published
    assert parked["routing_key"] == "payment.refund_payment.parked"
    assert parked["headers"]["saga-last-error"] == "ProcessRefund failed: ErrProcessRefund"
    assert json.loads(parked["body"])["order_id"] == "order-refund-fails"
    assert [e.type for e in db.published] == ["PaymentRefundFailed"]
    assert [raw.acks for raw in raws] == [1, 1, 1]
    assert (delivery.stats.handled, delivery.stats.parked) == (2, 1)


def debit_failed(order_id: str) -> bytes:
    return encode(
        PaymentDebitFailed.caused_by(
            f"cause-{order_id}",
            producer="payment",
            order_id=order_id,
            transaction_id=transaction_id(order_id, "Debit"),
            amount=Decimal("10.00"),
            error="ErrProcessPayment",
        )
    )


async def test_a_handler_publishing_an_event_its_queue_does_not_declare_is_refused() -> None:
    # payment.debit_payment declares PaymentDebited and PaymentDebitFailed, not
    # InventoryReserved-like events of other services: the bug shows in tests as a retry.
    db, broker = FakeDatabase(), FakeBroker()

    async def forge(uow: Any, batch: Sequence[Received[Any]]) -> None:
        for received in batch:
            uow.publish(
                PaymentRefundFailed.caused_by(
                    received.message_id,
                    producer="payment",
                    order_id=received.saga_id,
                    step="ProcessRefund",
                    error="not mine to say",
                    cause="",
                )
            )

    delivery = DeliveryHandler(
        Subscription(consumer("payment", "debit_payment"), forge),
        broker=broker,  # type: ignore[arg-type]
        unit_of_work=lambda: FakeUnitOfWork(db),  # type: ignore[arg-type,return-value]
        retry_policy=RetryPolicy(),
        service="payment",
        trust=PAYMENT,
    )
    raw = FakeRaw(order_created("order-forged"))
    await delivery.handle(raw)
    assert db.published == []
    (retry,) = broker.published
    assert retry["routing_key"] == "payment.debit_payment.retry.1"
    assert "UndeclaredEvent" in retry["headers"]["saga-last-error"]
    assert "PaymentRefundFailed is not declared here" in retry["headers"]["saga-last-error"]


@pytest.mark.parametrize("header", ["x", -3, "99999999", b"\xff", 1.5])
async def test_an_attempt_count_that_is_not_a_small_count_is_a_first_attempt(header: Any) -> None:
    delivery, _, broker, _ = wire(batch_size=1, fail_on="order-odd")
    await delivery.handle(FakeRaw(order_created("order-odd"), headers={"saga-attempt": header}))
    (retry,) = broker.published
    assert retry["routing_key"] == "payment.debit_payment.retry.1"
    assert retry["headers"]["saga-attempt"] == 1


class FakeChannel:
    """Records the ack frames sent on it: (delivery tag, multiple)."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bool]] = []


class TaggedRaw(FakeRaw):
    """A delivery with its channel's delivery tag, acked as aio-pika does."""

    def __init__(self, body: bytes, *, channel: FakeChannel, tag: int) -> None:
        super().__init__(body)
        self.channel = channel
        self.delivery_tag = tag

    async def ack(self, multiple: bool = False) -> None:  # type: ignore[override]
        self.channel.frames.append((self.delivery_tag, multiple))
        self.acks += 1


def tagged(channel: FakeChannel, *tags: int) -> list[TaggedRaw]:
    return [TaggedRaw(order_created(f"order-t{tag}"), channel=channel, tag=tag) for tag in tags]


async def test_a_batch_holding_every_delivery_in_hand_is_acked_with_one_frame() -> None:
    delivery, db, _, batches = wire()
    channel = FakeChannel()
    raws = tagged(channel, 1, 2, 3)
    await asyncio.gather(*(delivery.handle(raw) for raw in raws))
    assert batches == [["order-t1", "order-t2", "order-t3"]]
    assert len([t for t in db.transactions if t]) == 1
    assert channel.frames == [(3, True)]  # basic.ack multiple: settles 1, 2 and 3


async def test_a_batch_is_acked_one_frame_each_while_a_lower_delivery_is_in_hand() -> None:
    delivery, _, _, batches = wire()
    channel = FakeChannel()
    (first,) = tagged(channel, 1)  # delivered, its handling not returned yet
    later = tagged(channel, 2, 3, 4)
    await asyncio.gather(*(delivery.handle(raw) for raw in later))
    assert batches == [["order-t2", "order-t3", "order-t4"]]
    # One frame with `multiple` would have acked delivery 1 too, unhandled: lost.
    assert sorted(channel.frames) == [(2, False), (3, False), (4, False)]
    assert first.acks == 0

    await delivery.handle(first)
    more = tagged(channel, 5, 6)
    await asyncio.gather(*(delivery.handle(raw) for raw in more))
    # Every tag below 6 settled now: the next batch is one frame again.
    assert channel.frames[-2:] == [(1, False), (6, True)]
