"""Two replicas of one service on the same database and the same queues (competing
consumers), against the real PostgreSQL and RabbitMQ: the events of one saga reach both
replicas at the same moment, and the saga's steps still apply once each, in order.

Each saga gets its OrderCreated twice (a relay that republished it) and its OrderCancelled
twice, all four published back to back, so that RabbitMQ hands the copies out to both
replicas in turn; every handler is slowed inside its transaction, with the saga's lock
held, so the two replicas' transactions of one saga overlap. What must hold for each saga
is what holds when one process handles the four messages one after the other: either the
Debit first and then exactly one Credit that undoes it, or the cancellation first and no
Debit ever (the late OrderCreated refused); never a Debit left standing, never two of
anything.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from sqlalchemy import select

from contracts import Event, OrderCancelled
from saga_log.runtime import ServiceRuntime
from services.payment import main as payment_main
from services.payment.tables import cancelled_sagas, inbox, outbox, payments
from tests.integration.conftest import payment_settings
from tests.integration.test_outbox_inbox import order_created
from tests.support import Broker, as_producer, drop_databases, eventually

SAGAS = 20
#: Inside the transaction, after the claim has taken the saga's lock: the other replica's
#: transaction of the same saga waits on that lock meanwhile.
SLOW = json.dumps(
    {
        "delay": {
            "payment.debit_payment": [0.02, 0.1],
            "payment.cancel_payment": [0.02, 0.1],
        }
    }
)


@pytest.fixture
async def replicas(broker: Broker, pg_server_url: str) -> AsyncIterator[list[ServiceRuntime]]:
    """Two payment services in this process, on one database and one vhost, started."""
    name = f"test_payments_{uuid.uuid4().hex[:8]}"
    settings = payment_settings(broker, pg_server_url, name, fault_plan_json=SLOW)
    started: list[ServiceRuntime] = []
    try:
        for _ in range(2):
            runtime = payment_main.build(settings)
            await runtime.start()
            started.append(runtime)
        yield started
    finally:
        for runtime in started:
            await runtime.stop()
        await drop_databases(pg_server_url, [name])


def handled(runtime: ServiceRuntime, queue: str) -> tuple[int, int]:
    """(handled, duplicates) of one replica's consumer of `queue`."""
    handler = next(h for h in runtime.handlers if h.consumer.queue == queue)
    return handler.stats.handled, handler.stats.duplicates


async def test_one_sagas_events_at_two_replicas_at_once_apply_once_and_in_order(
    replicas: list[ServiceRuntime], broker: Broker
) -> None:
    created = [order_created() for _ in range(SAGAS)]
    cancelled = [
        OrderCancelled.caused_by(
            f"deadline-{event.order_id}",
            producer="order",
            order_id=event.order_id,
            reason="step_timeout",
            waited_seconds=10.0,
        )
        for event in created
    ]
    connection = await aio_pika.connect(broker.url("order"))
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange("saga.events")

        async def publish(event: Event) -> None:
            await exchange.publish(as_producer(event, broker), routing_key=event.routing_key)

        # Each saga's four messages back to back; consecutive deliveries of a queue go to
        # the two consumers in turn, so a saga's two copies land on both replicas.
        for forward, cancel in zip(created, cancelled, strict=True):
            for event in (forward, forward, cancel, cancel):
                await publish(event)

    queues = ("payment.debit_payment", "payment.cancel_payment")

    async def all_settled() -> bool:
        # Every copy is handled or found a duplicate, by one replica or the other.
        return all(sum(sum(handled(r, queue)) for r in replicas) == 2 * SAGAS for queue in queues)

    await eventually(all_settled, timeout=60)

    # Both replicas did take part, on both queues, and the inbox caught every second copy.
    for queue in queues:
        per_replica = [handled(r, queue) for r in replicas]
        assert all(h + d > 0 for h, d in per_replica), (queue, per_replica)
        assert sum(d for _, d in per_replica) == SAGAS, (queue, per_replica)

    ids = [event.order_id for event in created]
    engine = replicas[0].engine
    async with engine.connect() as conn:
        written = (
            await conn.execute(
                select(
                    payments.c.order_id,
                    payments.c.payment_type,
                    payments.c.payment_amount,
                    payments.c.transaction_date,
                ).where(payments.c.order_id.in_(ids))
            )
        ).all()
        emitted = (
            await conn.execute(
                select(outbox.c.correlation_id, outbox.c.message_type, outbox.c.position)
                .where(outbox.c.correlation_id.in_(ids))
                .order_by(outbox.c.position)
            )
        ).all()
        marked = set(
            (
                await conn.scalars(
                    select(cancelled_sagas.c.saga_id).where(cancelled_sagas.c.saga_id.in_(ids))
                )
            ).all()
        )
        claims = Counter(
            (
                await conn.execute(select(inbox.c.consumer).where(inbox.c.consumer.in_(queues)))
            ).scalars()
        )

    by_saga: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for row in written:
        by_saga[row.order_id][row.payment_type].append(row)
    events: dict[str, list[str]] = defaultdict(list)
    for row in emitted:
        events[row.correlation_id].append(row.message_type)

    debited_then_refunded = 0
    for order_id in ids:
        kinds = by_saga[order_id]
        assert len(kinds["Debit"]) <= 1 and len(kinds["Credit"]) <= 1, (order_id, kinds)
        # Never a Debit left standing, nor a Credit without its Debit.
        assert bool(kinds["Debit"]) == bool(kinds["Credit"]), (order_id, kinds)
        if kinds["Debit"]:
            debit, credit = kinds["Debit"][0], kinds["Credit"][0]
            assert credit.payment_amount == -debit.payment_amount
            # In order: the Credit was written after the Debit, and announced after it.
            assert credit.transaction_date >= debit.transaction_date
            assert events[order_id] == ["PaymentDebited", "PaymentRefunded"], events[order_id]
            debited_then_refunded += 1
        else:
            # The cancellation came first: the late OrderCreated debited nothing.
            assert events[order_id] == [], (order_id, events[order_id])
    assert marked == set(ids), "every saga is recorded as cancelled, once"
    assert claims == dict.fromkeys(queues, SAGAS), claims
    print(
        f"replicas: {debited_then_refunded} of {SAGAS} sagas debited then refunded, "
        f"{SAGAS - debited_then_refunded} cancelled before their debit"
    )
