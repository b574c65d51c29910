"""What an operator meets at 3 a.m.: parked compensations redriven once their cause is
fixed, dead letters listed, replayed and discarded, bad input rejected with a reason."""

from __future__ import annotations

import json
from typing import Any

import httpx

from contracts.samples import fresh_order_id, sample_order
from saga_log.ops.client import SagaWatcher
from saga_log.ops.operator import DEAD, PARKED, list_held
from tests.support import Stack, eventually, fetch, operator_cli, publish_as


async def order_state(stack: Stack, order_id: str) -> dict:
    async with httpx.AsyncClient(base_url=stack.order_api) as http:
        return (await http.get(f"/orders/{order_id}")).json()


async def publish(stack: Stack, role: str, body: bytes, routing_key: str, **props: Any) -> None:
    """Publish as the broker user of `role`, with its user_id."""
    await publish_as(stack.broker, role, body, routing_key, **props)


COMPENSATION_FAILED = {"OrderStatusUpdateFailed", "PaymentRefundFailed", "InventoryReleaseFailed"}


async def test_failed_compensations_are_parked_then_redriven_once_fixed(stack: Stack) -> None:
    async with SagaWatcher(stack.amqp_url) as watcher:
        ids = {scenario: fresh_order_id(scenario) for scenario in ("22", "33")}
        for scenario, order_id in ids.items():
            await watcher.place(sample_order(scenario, order_id=order_id))
        for order_id in ids.values():
            events = await watcher.wait(order_id, timeout=30)
            assert len([e for e in events if e["type"] in COMPENSATION_FAILED]) == 1

    parked = {m.saga_id: m for m in await list_held(stack.operator_url, PARKED)}
    assert parked[ids["22"]].work_queue == "payment.refund_payment"
    assert "ErrProcessRefund" in parked[ids["22"]].reason
    assert parked[ids["33"]].work_queue == "inventory.release_inventory"
    listing = operator_cli(stack, "parked")
    assert ids["22"] in listing.stdout and ids["33"] in listing.stdout

    # The cause is fixed: the services come back without the demo faults.
    stack.env["SAGA_FAULTS"] = "off"
    for service in ("order", "payment", "inventory"):
        stack.stop(service)
        stack.start(service)
    for order_id in ids.values():
        redriven = operator_cli(stack, "redrive", "--order-id", order_id)
        assert redriven.returncode == 0, redriven.stderr
        assert "1 message(s) redriven" in redriven.stdout

    async def pending(order_id: str) -> dict:
        state = await order_state(stack, order_id)
        return state if state["order_status"] == "Pending" else {}

    after_22 = await eventually(lambda: pending(ids["22"]))
    assert sorted(after_22["payment_transactions"]) == ["Credit", "Debit"]
    after_33 = await eventually(lambda: pending(ids["33"]))
    assert sorted(after_33["payment_transactions"]) == ["Credit", "Debit"]
    assert sorted(after_33["inventory_transactions"]) == ["Release", "Reserve"]
    payments = await fetch(
        stack.database_urls["payment"],
        "SELECT payment_type, payment_amount FROM payments"
        " WHERE order_id = $1 ORDER BY payment_type",
        ids["33"],
    )
    assert [row["payment_type"] for row in payments] == ["Credit", "Debit"]
    assert payments[0]["payment_amount"] == -payments[1]["payment_amount"]
    terminal = await fetch(
        stack.database_urls["order"],
        "SELECT count(*) AS n FROM outbox WHERE correlation_id = ANY($1)"
        " AND message_type IN ('OrderSucceeded', 'OrderFailed')",
        list(ids.values()),
    )
    assert terminal[0]["n"] == 2  # one terminal event each, redrive or not
    assert not [m for m in await list_held(stack.operator_url, PARKED) if m.saga_id in ids.values()]


async def test_dead_letters_are_listed_inspected_replayed_and_discarded(stack: Stack) -> None:
    # An already-applied OrderCreated that ended up dead-lettered: replaying it is harmless.
    async with SagaWatcher(stack.amqp_url) as watcher:
        order_id = fresh_order_id("ok")
        await watcher.place(sample_order("ok", order_id=order_id))
        events = await watcher.wait(order_id, timeout=30)
    created = next(e for e in events if e["type"] == "OrderCreated")
    # Dead-lettered by the payment service itself, through its holding exchange.
    await publish(
        stack,
        "payment",
        json.dumps(created).encode(),
        "payment.debit_payment.dlq",
        exchange="payment.holding",
        message_id=created["message_id"],
        headers={"saga-reject-reason": "delivery limit reached"},
    )
    await publish(
        stack, "order", b"\xff\xfe not even text", "order.created", message_id="garbage-1"
    )

    async def both_held() -> list:
        held = await list_held(stack.operator_url, DEAD)
        ids = {m.message_id for m in held}
        return held if {created["message_id"], "garbage-1"} <= ids else []

    held = await eventually(both_held)
    garbage = [m for m in held if m.message_id == "garbage-1"]
    # Both consumers bound to order.created refused it: the payment service and the history.
    assert {m.queue for m in garbage} == {"payment.debit_payment.dlq", "saga_log.record.dlq"}
    assert all("not UTF-8" in m.reason for m in garbage)
    shown = operator_cli(stack, "dead-letters")
    assert "garbage-1" in shown.stdout and "not UTF-8" in shown.stdout
    inspected = operator_cli(stack, "inspect", "garbage-1")
    assert inspected.returncode == 0 and '"queue": "payment.debit_payment.dlq"' in inspected.stdout

    before = stack.health("payment")["consumers"]["payment.debit_payment"]["duplicates"]  # type: ignore[index]
    replayed = operator_cli(stack, "replay", "--message-id", created["message_id"])
    assert replayed.returncode == 0, replayed.stderr

    async def absorbed() -> bool:
        health = stack.health("payment")
        return (
            bool(health)
            and health["consumers"]["payment.debit_payment"]["duplicates"] == before + 1
        )  # type: ignore[index]

    await eventually(absorbed)
    debits = await fetch(
        stack.database_urls["payment"], "SELECT * FROM payments WHERE order_id = $1", order_id
    )
    assert [row["payment_type"] for row in debits] == ["Debit"]

    discarded = operator_cli(stack, "discard", "--message-id", "garbage-1")
    assert discarded.returncode == 0 and "2 message(s) discarded" in discarded.stdout
    assert "garbage-1" not in {m.message_id for m in await list_held(stack.operator_url, DEAD)}


async def test_an_invalid_order_is_rejected_naming_the_field_and_others_complete(
    stack: Stack,
) -> None:
    async with SagaWatcher(stack.amqp_url) as watcher:
        bad_id = fresh_order_id("ok")
        bad = sample_order("ok", order_id=bad_id)
        bad["items"][0]["qty"] = -1
        await publish(stack, "client", json.dumps(bad).encode(), "order.placed")
        no_items = fresh_order_id("ok")
        await publish(
            stack,
            "client",
            json.dumps({**sample_order("ok", order_id=no_items), "items": []}).encode(),
            "order.placed",
        )
        huge = b'{"order_id": "' + b"x" * (10 * 1024 * 1024) + b'"}'
        await publish(stack, "client", huge, "order.placed", message_id="ten-megabytes")
        good = fresh_order_id("ok")
        await watcher.place(sample_order("ok", order_id=good))

        async def rejected(order_id: str) -> dict:
            found = [e for e in watcher.events(order_id) if e["type"] == "OrderRejected"]
            return found[0] if found else {}

        first = await eventually(lambda: rejected(bad_id))
        second = await eventually(lambda: rejected(no_items))
        done = await watcher.wait(good, timeout=30)
    assert first["fields"] == ["items.0.qty"] and "greater than 0" in first["reason"]
    assert second["fields"] == ["items"]
    assert done[-1]["type"] == "OrderSucceeded"

    async def huge_dead_lettered() -> bool:
        return "ten-megabytes" in {m.message_id for m in await list_held(stack.operator_url, DEAD)}

    await eventually(huge_dead_lettered)
    orders = await fetch(
        stack.database_urls["order"],
        "SELECT order_id FROM orders WHERE order_id = ANY($1)",
        [bad_id, no_items],
    )
    assert orders == []


async def test_a_compensation_that_keeps_failing_is_retried_then_reported_then_redriven(
    stack: Stack,
) -> None:
    # ProcessRefund's database calls fail on every attempt (a fault plan standing in for an
    # outage): retried with backoff, then parked and reported with the attempts made.
    plan = json.dumps({"transient": {"payment.refund_payment": 99}})
    stack.env["SAGA_FAULTS"] = "seed"
    for service in ("order", "payment", "inventory"):
        stack.stop(service)
    stack.start("order")
    stack.start("inventory")
    stack.start("payment", SAGA_FAULT_PLAN=plan, SAGA_RETRY_BUDGETS='{"payment.refund_payment": 2}')
    async with SagaWatcher(stack.amqp_url) as watcher:
        order_id = fresh_order_id("2")
        await watcher.place(sample_order("2", order_id=order_id))
        events = await watcher.wait(order_id, timeout=30)
    failed = [e for e in events if e["type"] == "PaymentRefundFailed"]
    assert len(failed) == 1
    assert (failed[0]["step"], failed[0]["attempts"]) == ("ProcessRefund", 3)
    assert "fault plan" in failed[0]["error"]
    assert events[-1]["type"] == "OrderFailed"
    assert events[-1]["compensation_error"] == failed[0]["error"]
    health = stack.health("payment")
    assert health and health["consumers"]["payment.refund_payment"]["retried"] == 2
    (parked,) = [m for m in await list_held(stack.operator_url, PARKED) if m.saga_id == order_id]
    assert parked.attempts == 2

    # The outage is over: the refund is redriven and the saga finishes its compensations.
    stack.stop("payment")
    stack.start("payment")
    assert operator_cli(stack, "redrive", "--order-id", order_id).returncode == 0

    async def refunded() -> dict:
        state = await order_state(stack, order_id)
        return state if state["order_status"] == "Pending" else {}

    state = await eventually(refunded)
    assert sorted(state["payment_transactions"]) == ["Credit", "Debit"]
