"""Crash safety: a service killed at the dangerous points (as kill -9 would: no clean-up)
and started again; PostgreSQL connections cut under load. Every saga still reaches its
end, no event is lost and none is applied twice."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from contracts.samples import fresh_order_id, sample_order
from saga_log.ops.client import TERMINAL_TYPES, SagaWatcher
from tests.support import Broker, Stack, eventually, fetch, running_stack


@pytest.fixture(scope="module")
def stack(broker: Broker, pg_server_url: str) -> Iterator[Stack]:
    services = ("order", "payment", "inventory")
    with running_stack(broker, pg_server_url, services=services, faults="off") as stack:
        yield stack


def crash_at(point: str, queue: str | None = None) -> str:
    return json.dumps({"crash": [{"at": point, "queue": queue, "probability": 1.0}]})


async def wait_until_dead(stack: Stack, name: str) -> None:
    async def dead() -> bool:
        return stack.processes[name].poll() is not None

    await eventually(dead, timeout=30)
    stack.processes.pop(name)


async def count(stack: Stack, service: str, query: str, *args: object) -> int:
    return int((await fetch(stack.database_urls[service], query, *args))[0][0])


async def assert_succeeded_once(stack: Stack, order_id: str) -> None:
    assert (
        await count(stack, "payment", "SELECT count(*) FROM payments WHERE order_id = $1", order_id)
        == 1
    )
    assert (
        await count(
            stack, "inventory", "SELECT count(*) FROM inventory WHERE order_id = $1", order_id
        )
        == 1
    )
    for service, kind in (
        ("payment", "PaymentDebited"),
        ("inventory", "InventoryReserved"),
        ("order", "OrderSucceeded"),
    ):
        assert (
            await count(
                stack,
                service,
                "SELECT count(*) FROM outbox WHERE correlation_id = $1 AND message_type = $2",
                order_id,
                kind,
            )
            == 1
        ), kind


def duplicates(stack: Stack, service: str, queue: str) -> int:
    health = stack.health(service)
    return int(health["consumers"][queue]["duplicates"]) if health else 0


async def test_killed_after_commit_before_ack_and_before_publish(stack: Stack) -> None:
    stack.stop("payment")
    stack.start("payment", SAGA_FAULT_PLAN=crash_at("after_commit", "payment.debit_payment"))
    async with SagaWatcher(stack.amqp_url) as watcher:
        order_id = fresh_order_id("ok")
        await watcher.place(sample_order("ok", order_id=order_id))
        await wait_until_dead(stack, "payment")
        # The Debit is committed, with its PaymentDebited still in the outbox, unacked.
        assert (
            await count(
                stack, "payment", "SELECT count(*) FROM payments WHERE order_id = $1", order_id
            )
            == 1
        )
        stack.start("payment")
        events = await watcher.wait(order_id, timeout=30)
    assert [e["type"] for e in events if e["type"] in TERMINAL_TYPES] == ["OrderSucceeded"]
    await assert_succeeded_once(stack, order_id)
    # The redelivered OrderCreated met the inbox.
    assert duplicates(stack, "payment", "payment.debit_payment") == 1


async def test_killed_after_publishing_before_marking_published(stack: Stack) -> None:
    before = duplicates(stack, "inventory", "inventory.reserve_inventory")
    stack.stop("payment")
    stack.start("payment", SAGA_FAULT_PLAN=crash_at("relay_after_publish"))
    async with SagaWatcher(stack.amqp_url) as watcher:
        order_id = fresh_order_id("ok")
        await watcher.place(sample_order("ok", order_id=order_id))
        await wait_until_dead(stack, "payment")
        stack.start("payment")
        events = await watcher.wait(order_id, timeout=30)
        # The relay sends the unstamped PaymentDebited again, with the same message id.
        copies = [e for e in events if e["type"] == "PaymentDebited"]

        async def both_seen() -> bool:
            copies[:] = [e for e in watcher.events(order_id) if e["type"] == "PaymentDebited"]
            return len(copies) == 2

        await eventually(both_seen)
    assert copies[0]["message_id"] == copies[1]["message_id"]
    await assert_succeeded_once(stack, order_id)

    async def absorbed() -> bool:
        return duplicates(stack, "inventory", "inventory.reserve_inventory") == before + 1

    await eventually(absorbed)


async def test_killed_before_commit_leaves_nothing_half_done(stack: Stack) -> None:
    stack.stop("inventory")
    stack.start(
        "inventory", SAGA_FAULT_PLAN=crash_at("before_commit", "inventory.reserve_inventory")
    )
    async with SagaWatcher(stack.amqp_url) as watcher:
        order_id = fresh_order_id("ok")
        await watcher.place(sample_order("ok", order_id=order_id))
        await wait_until_dead(stack, "inventory")
        assert (
            await count(
                stack, "inventory", "SELECT count(*) FROM inventory WHERE order_id = $1", order_id
            )
            == 0
        )
        stack.start("inventory")
        events = await watcher.wait(order_id, timeout=30)
    assert events[-1]["type"] == "OrderSucceeded"
    await assert_succeeded_once(stack, order_id)


async def test_cut_database_connections_under_load_lose_nothing(
    stack: Stack, pg_server_url: str
) -> None:
    names = [urlsplit(url).path.lstrip("/") for url in stack.database_urls.values()]
    parts = urlsplit(pg_server_url)
    admin = await asyncpg.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username or "postgres",
        database="postgres",
    )
    async with SagaWatcher(stack.amqp_url) as watcher:
        order_ids = [fresh_order_id("ok") for _ in range(40)]
        cut = 0
        for i, order_id in enumerate(order_ids):
            await watcher.place(sample_order("ok", order_id=order_id))
            if i % 10 == 5:
                await asyncio.sleep(0.3)  # let the services open connections to be cut
                cut += await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = ANY($1)",
                    names,
                )
        await admin.close()
        assert cut > 0
        for order_id in order_ids:
            events = await watcher.wait(order_id, timeout=60)
            assert [e["type"] for e in events if e["type"] in TERMINAL_TYPES] == ["OrderSucceeded"]
    for order_id in order_ids:
        await assert_succeeded_once(stack, order_id)
