"""Deadlines: a saga with no outcome in time is cancelled by the order service and every
service compensates what it did; an event arriving after the cancellation is compensated,
never applied, even when both are handled at the same moment in different processes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from contracts.samples import fresh_order_id, sample_order
from saga_log.ops.client import TERMINAL_TYPES, SagaWatcher
from tests.support import Broker, Stack, eventually, fetch, running_stack

FAST_DEADLINES = {"SAGA_STEP_TIMEOUT": "1.5", "SAGA_DEADLINE_CHECK_INTERVAL": "0.1"}


@pytest.fixture(scope="module")
def stack(broker: Broker, pg_server_url: str) -> Iterator[Stack]:
    services = ("order", "payment", "inventory")
    with running_stack(
        broker, pg_server_url, services=services, faults="off", **FAST_DEADLINES
    ) as stack:
        yield stack


async def rows(stack: Stack, service: str, table: str, column: str, order_id: str) -> list[str]:
    found = await fetch(
        stack.database_urls[service],
        f"SELECT {column} FROM {table} WHERE order_id = $1 ORDER BY 1",
        order_id,
    )
    return [row[column] for row in found]


async def terminal_count(stack: Stack, order_id: str) -> int:
    found = await fetch(
        stack.database_urls["order"],
        "SELECT count(*) AS n FROM outbox WHERE correlation_id = $1"
        " AND message_type IN ('OrderSucceeded', 'OrderFailed')",
        order_id,
    )
    return int(found[0]["n"])


async def test_a_saga_whose_service_is_down_is_cancelled_and_compensated(stack: Stack) -> None:
    stack.stop("inventory")
    try:
        async with SagaWatcher(stack.amqp_url) as watcher:
            order_id = fresh_order_id("ok")
            await watcher.place(sample_order("ok", order_id=order_id))
            events = await watcher.wait(order_id, timeout=30)
            terminal = [e for e in events if e["type"] in TERMINAL_TYPES]
            assert [(e["type"], e["cause"]) for e in terminal] == [("OrderFailed", "StepTimedOut")]
            assert "OrderCancelled" in [e["type"] for e in events]

            async def refunded() -> list[str]:
                found = await rows(stack, "payment", "payments", "payment_type", order_id)
                return found if found == ["Credit", "Debit"] else []

            await eventually(refunded)
            assert await rows(stack, "order", "orders", "order_status", order_id) == ["Pending"]
    finally:
        # Back with its reservations late (a wait before their transaction, holding no
        # lock), so that it learns of the cancellation (on its own queue) before it handles
        # the PaymentDebited it missed. A `delay` would not do: it runs after the claim has
        # locked the saga, and the cancellation then waits for the reservation.
        stack.start(
            "inventory", SAGA_FAULT_PLAN=json.dumps({"wait": {"inventory.reserve_inventory": 1.0}})
        )

    # The inventory service comes back and finds the PaymentDebited it missed: it must not
    # reserve for a saga it knows was cancelled.
    debited = next(e for e in events if e["type"] == "PaymentDebited")

    async def late_event_handled() -> bool:
        inbox = await fetch(
            stack.database_urls["inventory"],
            "SELECT 1 FROM inbox"
            " WHERE consumer = 'inventory.reserve_inventory' AND message_id = $1",
            debited["message_id"],
        )
        return bool(inbox)

    await eventually(late_event_handled)
    assert await rows(stack, "inventory", "inventory", "transaction_type", order_id) == []
    assert await rows(stack, "payment", "payments", "payment_type", order_id) == ["Credit", "Debit"]
    assert await terminal_count(stack, order_id) == 1


async def test_cancellations_racing_late_events_in_other_processes_never_apply_them(
    stack: Stack,
) -> None:
    # Handlers slowed to about the step timeout, and a second replica of payment and
    # inventory: cancellations and forward steps of the same saga meet in different
    # processes at the same moment.
    plan = json.dumps(
        {"delay": {"payment.debit_payment": [1.0, 2.0], "inventory.reserve_inventory": [1.0, 2.0]}}
    )
    for service in ("payment", "inventory"):
        stack.stop(service)
        stack.start(service, SAGA_FAULT_PLAN=plan)
        stack.start(service, name=f"{service}-2", SAGA_FAULT_PLAN=plan)
    try:
        async with SagaWatcher(stack.amqp_url) as watcher:
            order_ids = [fresh_order_id("ok") for _ in range(30)]
            for order_id in order_ids:
                await watcher.place(sample_order("ok", order_id=order_id))
            ends = {}
            for order_id in order_ids:
                events = await watcher.wait(order_id, timeout=60)
                ends[order_id] = next(e for e in events if e["type"] in TERMINAL_TYPES)

        async def settled(order_id: str) -> bool:
            payments = await rows(stack, "payment", "payments", "payment_type", order_id)
            stock = await rows(stack, "inventory", "inventory", "transaction_type", order_id)
            return (
                payments in ([], ["Credit", "Debit"], ["Debit"])
                and stock
                in (
                    [],
                    ["Release", "Reserve"],
                    ["Reserve"],
                )
                and not (
                    ends[order_id]["type"] == "OrderFailed"
                    and ("Debit" in payments) != ("Credit" in payments)
                )
            )

        cancelled = [o for o, end in ends.items() if end["type"] == "OrderFailed"]
        assert cancelled, "the race did not happen: no saga was cancelled"
        for order_id in order_ids:
            await eventually(lambda order_id=order_id: settled(order_id), timeout=30)
            payments = await rows(stack, "payment", "payments", "payment_type", order_id)
            stock = await rows(stack, "inventory", "inventory", "transaction_type", order_id)
            assert await terminal_count(stack, order_id) == 1
            if ends[order_id]["type"] == "OrderSucceeded":
                assert (payments, stock) == (["Debit"], ["Reserve"])
            else:
                assert ends[order_id]["cause"] in ("StepTimedOut", "SagaDeadlineExceeded")
                assert payments in ([], ["Credit", "Debit"]), (order_id, payments)
                assert stock in ([], ["Release", "Reserve"]), (order_id, stock)
    finally:
        for service in ("payment", "inventory"):
            stack.stop(f"{service}-2")
            stack.stop(service)
            stack.start(service)
