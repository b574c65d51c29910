from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from faststream.rabbit import RabbitBroker

from saga_log.ops.client import SagaWatcher
from saga_log.runtime import (
    OutboxRelay,
    ServiceRuntime,
    UnitOfWork,
    create_engine,
    declare_topology,
    upgrade,
)
from services.payment import main as payment_main
from services.payment import tables as payment_tables
from services.payment.config import Settings as PaymentSettings
from tests.support import FAST_RETRIES, FIELD_KEYS, Broker, database_url, drop_databases


def payment_settings(
    broker: Broker, pg_server_url: str, database: str, **extra: Any
) -> PaymentSettings:
    """The payment service's settings for a test: its own database on the test server, the
    test vhost's users, no sample faults, fast retries."""
    return PaymentSettings(
        database_url=database_url(pg_server_url, database),
        amqp_url=broker.url("payment"),
        broker_user_prefix=broker.prefix,
        faults="off",
        field_keys=FIELD_KEYS,
        **{key.removeprefix("SAGA_").lower(): value for key, value in FAST_RETRIES.items()},
        **extra,
    )


@pytest.fixture(scope="module")
async def payment_service(broker: Broker, pg_server_url: str) -> AsyncIterator[ServiceRuntime]:
    """The real payment service, in this process, on its own database and vhost."""
    name = f"test_payments_{uuid.uuid4().hex[:8]}"
    runtime = payment_main.build(payment_settings(broker, pg_server_url, name))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()
        await drop_databases(pg_server_url, [name])


@pytest.fixture
async def watcher(broker: Broker) -> AsyncIterator[SagaWatcher]:
    async with SagaWatcher(broker.url("client")) as watcher:
        yield watcher


class Outbox:
    """The runtime's outbox pieces on a real database, driven by hand (no relay task)."""

    def __init__(self, engine, broker: RabbitBroker, user: str) -> None:  # type: ignore[no-untyped-def]
        self.engine = engine
        self.relay = OutboxRelay(engine, payment_tables.outbox, broker, batch_size=50, user_id=user)
        self.wakeups = 0

    def unit_of_work(self) -> UnitOfWork:
        def woken(rows: object) -> None:
            self.wakeups += 1

        return UnitOfWork(
            self.engine, outbox=payment_tables.outbox, inbox=payment_tables.inbox, on_commit=woken
        )


@pytest.fixture
async def outbox(broker: Broker, pg_server_url: str) -> AsyncIterator[Outbox]:
    name = f"test_outbox_{uuid.uuid4().hex[:8]}"
    from saga_log.runtime import ensure_database

    url = database_url(pg_server_url, name)
    await ensure_database(url)
    engine = create_engine(url)
    await upgrade(engine, payment_main.MIGRATIONS)
    rabbit = RabbitBroker(broker.url("payment"))
    await rabbit.connect()
    await declare_topology(rabbit, "payment")
    try:
        yield Outbox(engine, rabbit, f"{broker.prefix}payment")
    finally:
        await rabbit.stop()
        await engine.dispose()
        await asyncio.sleep(0)
        await drop_databases(pg_server_url, [name])
