"""The seven scenarios of SEED_BEHAVIOUR.md, through the real broker, with the three
services as separate processes; each service's own database is checked afterwards."""

from __future__ import annotations

import json
from decimal import Decimal
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from contracts import transaction_id
from contracts.samples import EXPECTED, SCENARIOS, fresh_order_id, sample_order
from saga_log.ops.client import TERMINAL_TYPES, SagaWatcher
from tests.support import Stack, eventually, fetch, management_publish

TOTALS = {
    "ok": Decimal("99.00"),
    "1": Decimal("29.97"),
    "11": Decimal("199.99"),
    "2": Decimal("349.90"),
    "22": Decimal("199.98"),
    "3": Decimal("6.50"),
    "33": Decimal("199.99"),
}


async def assert_end_state(stack: Stack, scenario: str, order_id: str, events: list[dict]) -> None:
    expected = EXPECTED[scenario]
    terminal = [event for event in events if event["type"] in TERMINAL_TYPES]
    assert [event["type"] for event in terminal] == [expected["terminal"]], events
    if expected["terminal"] == "OrderFailed":
        assert terminal[0]["error"] == "SagaFailed"
        assert terminal[0]["compensation_error"] == expected["compensation_error"]

    # Exactly one terminal event ever left the order service for this saga.
    outbox = await fetch(
        stack.database_urls["order"],
        "SELECT message_type FROM outbox WHERE correlation_id = $1 AND message_type = ANY($2)",
        order_id,
        sorted(TERMINAL_TYPES),
    )
    assert len(outbox) == 1

    orders = await fetch(
        stack.database_urls["order"], "SELECT * FROM orders WHERE order_id = $1", order_id
    )
    assert [row["order_status"] for row in orders] == [expected["order_status"]]

    payments = await fetch(
        stack.database_urls["payment"],
        "SELECT * FROM payments WHERE order_id = $1 ORDER BY payment_type",
        order_id,
    )
    assert [row["payment_type"] for row in payments] == expected["payments"]
    for row in payments:
        assert row["transaction_id"] == transaction_id(order_id, row["payment_type"])
        assert row["merchant_id"] == "merch1"
        sign = -1 if row["payment_type"] == "Credit" else 1
        assert row["payment_amount"] == sign * TOTALS[scenario]

    inventory = await fetch(
        stack.database_urls["inventory"],
        "SELECT * FROM inventory WHERE order_id = $1 ORDER BY transaction_type",
        order_id,
    )
    assert [row["transaction_type"] for row in inventory] == expected["inventory"]
    item_id = sample_order(scenario)["items"][0]["item_id"]
    for row in inventory:
        assert row["transaction_id"] == transaction_id(order_id, row["transaction_type"])
        assert json.loads(row["items"]) == [item_id]

    async with httpx.AsyncClient(base_url=stack.order_api) as http:

        async def api_caught_up() -> dict | None:
            body = (await http.get(f"/orders/{order_id}")).json()
            known = {**body["payment_transactions"], **body["inventory_transactions"]}
            return body if len(known) == len(payments) + len(inventory) else None

        body = await eventually(api_caught_up)
    assert body["order_status"] == expected["order_status"]
    assert body["saga"]["outcome"] == (
        "succeeded" if expected["terminal"] == "OrderSucceeded" else "failed"
    )
    for row in payments:
        assert body["payment_transactions"][row["payment_type"]] == str(row["transaction_id"])
    for row in inventory:
        assert body["inventory_transactions"][row["transaction_type"]] == str(row["transaction_id"])


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_scenario_ends_as_the_sample_does(
    stack: Stack, watcher: SagaWatcher, scenario: str
) -> None:
    order_id = fresh_order_id(scenario)
    await watcher.place(sample_order(scenario, order_id=order_id))
    events = await watcher.wait(order_id, timeout=30)
    await assert_end_state(stack, scenario, order_id, events)


async def test_sample_order_ids_themselves_give_the_sample_outcomes(
    stack: Stack, watcher: SagaWatcher
) -> None:
    # The seed's own order ids, all at once: seven sagas interleaved.
    for scenario in SCENARIOS:
        await watcher.place(sample_order(scenario))
    for scenario in SCENARIOS:
        order_id = sample_order(scenario)["order_id"]
        events = await watcher.wait(order_id, timeout=30)
        await assert_end_state(stack, scenario, order_id, events)


async def test_same_order_published_twice_starts_one_saga(
    stack: Stack, watcher: SagaWatcher
) -> None:
    def duplicates() -> int:
        health = stack.health("order")
        assert health is not None
        return int(health["consumers"]["order.process_order"]["duplicates"])

    before = duplicates()
    order_id = fresh_order_id("ok")
    order = sample_order("ok", order_id=order_id)
    await watcher.place(order, message_id="first")
    await watcher.place(order, message_id="second")
    await watcher.wait(order_id, timeout=30)

    async def second_one_seen() -> bool:
        created = await fetch(
            stack.database_urls["order"],
            "SELECT count(*) AS n FROM outbox"
            " WHERE correlation_id = $1 AND message_type = 'OrderCreated'",
            order_id,
        )
        return created[0]["n"] == 1 and duplicates() == before + 1

    await eventually(second_one_seen)
    await assert_end_state(stack, "ok", order_id, watcher.events(order_id))


async def test_order_published_from_the_management_ui_starts_a_saga(
    stack: Stack, watcher: SagaWatcher, management_url: str
) -> None:
    order_id = fresh_order_id("2")
    vhost = unquote(urlsplit(stack.amqp_url).path.lstrip("/")) or "/"
    # Typed by hand into the form: indented, no content type, not persistent.
    payload = json.dumps(sample_order("2", order_id=order_id), indent=2)
    try:
        result = management_publish(
            management_url,
            vhost,
            "order.placed",
            payload,
            user=f"{stack.broker.prefix}client",
            password=stack.broker.passwords["client"],
        )
    except OSError as exc:
        pytest.skip(f"RabbitMQ management API not reachable at {management_url}: {exc}")
    assert result == {"routed": True}
    events = await watcher.wait(order_id, timeout=30)
    await assert_end_state(stack, "2", order_id, events)
