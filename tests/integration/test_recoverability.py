"""Retries, parking and dead letters on the real broker, with a real database outage
(connections refused) rather than a mock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import aio_pika
import asyncpg
from sqlalchemy import select

from contracts import encode
from saga_log.runtime import ServiceRuntime
from services.payment.tables import payments
from tests.integration.test_outbox_inbox import order_created
from tests.support import Broker, eventually, publish_as


@asynccontextmanager
async def database_outage(runtime: ServiceRuntime, pg_server_url: str) -> AsyncIterator[None]:
    """Refuse new connections to the service's database and cut the open ones."""
    name = urlsplit(runtime.settings.database_url).path.lstrip("/")
    parts = urlsplit(pg_server_url)
    admin = await asyncpg.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username or "postgres",
        database="postgres",
    )
    try:
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        await admin.close()


def debit_handler(runtime: ServiceRuntime):  # type: ignore[no-untyped-def]
    return next(h for h in runtime.handlers if h.consumer.handler == "debit_payment")


async def publish(broker: Broker, body: bytes, **properties: object) -> None:
    """As the order service would (the producer of OrderCreated)."""
    await publish_as(broker, "order", body, "order.created", **properties)


async def get_one(broker: Broker, queue_name: str) -> aio_pika.abc.AbstractIncomingMessage | None:
    """As an operator reads a held message."""
    connection = await aio_pika.connect(broker.url("operator"))
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name, ensure=False)
        message = await queue.get(no_ack=True, fail=False)
        return message


async def debits(runtime: ServiceRuntime, order_id: str) -> list[str]:
    async with runtime.engine.connect() as conn:
        return [
            row.payment_type
            for row in (
                await conn.execute(select(payments).where(payments.c.order_id == order_id))
            ).all()
        ]


async def test_database_outage_is_retried_after_a_delay_then_handled(
    payment_service: ServiceRuntime, broker: Broker, pg_server_url: str
) -> None:
    handler = debit_handler(payment_service)
    event = order_created()
    retried_before = handler.stats.retried
    async with database_outage(payment_service, pg_server_url):
        await publish(broker, encode(event), message_id=str(event.message_id))
        await eventually(lambda: _ready(handler.stats.retried > retried_before))
    # Connections are allowed again: a later retry from the delay queue succeeds.

    async def debited() -> list[str]:
        return await debits(payment_service, event.order_id)

    assert await eventually(debited, timeout=30) == ["Debit"]
    assert handler.stats.parked == 0


async def test_retry_budget_spent_parks_the_message_with_its_error(
    payment_service: ServiceRuntime, broker: Broker, pg_server_url: str
) -> None:
    handler = debit_handler(payment_service)
    event = order_created()
    parked_before = handler.stats.parked
    async with database_outage(payment_service, pg_server_url):
        await publish(broker, encode(event), message_id=str(event.message_id))
        await eventually(lambda: _ready(handler.stats.parked > parked_before), timeout=30)
    parked = await eventually(lambda: get_one(broker, "payment.debit_payment.parked"))
    assert parked.message_id == str(event.message_id)
    assert parked.body == encode(event)
    headers = parked.headers
    assert headers["saga-attempt"] == 3
    assert headers["saga-parked-by"] == "payment"
    assert (
        "database" in str(headers["saga-last-error"]).lower()
        or "connect" in str(headers["saga-last-error"]).lower()
    )
    assert await debits(payment_service, event.order_id) == []


async def test_malformed_message_is_dead_lettered_with_reason_and_others_go_on(
    payment_service: ServiceRuntime, broker: Broker
) -> None:
    handler = debit_handler(payment_service)
    dead_before = handler.stats.dead_lettered
    await publish(broker, b"{not json at all", content_type="application/json")
    await publish(broker, json.dumps({"type": "OrderCreated", "order_id": "x"}).encode())
    event = order_created()
    await publish(broker, encode(event))
    await eventually(lambda: _ready(handler.stats.dead_lettered == dead_before + 2))

    first = await eventually(lambda: get_one(broker, "payment.debit_payment.dlq"))
    second = await eventually(lambda: get_one(broker, "payment.debit_payment.dlq"))
    reasons = sorted([first.headers["saga-reject-reason"], second.headers["saga-reject-reason"]])  # type: ignore[index]
    assert "body is not JSON" in reasons[0]
    assert "message_id: Field required" in reasons[1]
    assert first.headers["saga-rejected-by"] == "payment"
    assert first.headers["saga-rejected-queue"] == "payment.debit_payment"
    assert first.headers["saga-rejected-at"]
    assert first.body == b"{not json at all" or second.body == b"{not json at all"

    async def debited() -> list[str]:
        return await debits(payment_service, event.order_id)

    assert await eventually(debited) == ["Debit"]


async def _ready(value: bool) -> bool:
    return value
