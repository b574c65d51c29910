"""The fare saga's five scenarios of FARE_BEHAVIOUR.md, through the real broker, with the
services as separate processes: each service's own database, the lab's notification
queues and the saga history are checked afterwards, and the card is found in clear
nowhere."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
import httpx
import pytest

from contracts import FARE
from contracts.samples import FARE_EXPECTED, FARE_SCENARIOS, LAB_FARE, fresh_fare_id, sample_fare
from saga_log.ops.client import TERMINAL_TYPES, SagaWatcher
from tests.support import Stack, eventually, fetch, management_publish

CARD_IN_CLEAR = (LAB_FARE["cc"], LAB_FARE["cc"].replace(" ", ""), f'"{LAB_FARE["expiryDate"]}"')


async def notification(stack: Stack, queue: str, fare_id: str) -> dict[str, Any] | None:
    """The lab's notification for `fare_id` on `queue`, as a user reads it in the UI (the
    queue is browsed: messages are put back)."""
    connection = await aio_pika.connect(stack.amqp_url)
    async with connection:
        channel = await connection.channel()
        source = await channel.get_queue(queue, ensure=False)
        found = None
        while (message := await source.get(no_ack=False, fail=False)) is not None:
            body = json.loads(message.body)
            if body.get("fareId") == fare_id:
                found = body
    return found


async def assert_fare_end_state(
    stack: Stack, scenario: str, fare_id: str, events: list[dict[str, Any]]
) -> None:
    expected = FARE_EXPECTED[scenario]
    terminal = [event for event in events if event["type"] in TERMINAL_TYPES]
    assert [event["type"] for event in terminal] == [expected["terminal"]], events
    if expected["error"]:
        assert terminal[0]["error"] == expected["error"]
    else:
        assert terminal[0]["chargeToken"] and terminal[0]["chargeId"]
        assert terminal[0]["fareAmount"] == "20.00"

    outbox = await fetch(
        stack.database_urls["fare"],
        "SELECT message_type FROM outbox WHERE correlation_id = $1 AND message_type = ANY($2)",
        fare_id,
        sorted(TERMINAL_TYPES),
    )
    assert len(outbox) == 1, "exactly one terminal event left the fare service"

    (fare,) = await fetch(
        stack.database_urls["fare"], "SELECT * FROM fares WHERE fare_id = $1", fare_id
    )
    assert fare["fare_status"] == expected["fare_status"]
    assert fare["fare_amount"] == Decimal("20.00")
    assert fare["card_last4"] == "2424"
    assert fare["customer_id"] == sample_fare(scenario)["customerId"]

    charges = await fetch(
        stack.database_urls["payment"], "SELECT * FROM fare_charges WHERE fare_id = $1", fare_id
    )
    assert [row["status"] for row in charges] == [expected["charge"]]
    charge = charges[0]
    assert (charge["charge_id"] is not None) == (expected["charge"] in {"captured", "refunded"})
    assert (charge["refund_id"] is not None) == expected["refunded"]
    if charge["charge_id"]:
        assert charge["charge_id"].startswith("ch_") and len(charge["charge_id"]) == 28
    if charge["charge_token"]:
        assert charge["charge_token"].startswith("tok_") and len(charge["charge_token"]) == 29
    if charge["refund_id"]:
        assert charge["refund_id"].startswith("re_") and len(charge["refund_id"]) == 28

    credits = await fetch(
        stack.database_urls["accounting"],
        "SELECT * FROM account_credits WHERE fare_id = $1",
        fare_id,
    )
    assert bool(credits) == expected["credited"]
    for credit in credits:
        assert credit["amount"] == Decimal("20.00")
        assert credit["charge_id"] == charge["charge_id"]

    queue = (
        "WildRydesSuccessfulTransactionsQueue"
        if expected["terminal"] == "FareProcessingSucceeded"
        else "WildRydesFailedTransactionsQueue"
    )
    note = await eventually(lambda: notification(stack, queue, fare_id))
    assert note["type"] == expected["terminal"]
    assert note["customerId"] == sample_fare(scenario)["customerId"]


async def assert_history(stack: Stack, scenario: str, fare_id: str, count: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.history_url) as http:

        async def recorded() -> dict[str, Any]:
            response = await http.get(f"/sagas/{fare_id}")
            body = response.json() if response.status_code == 200 else {}
            return body if body and len(body["timeline"]) == count else {}

        body = await eventually(recorded)
    saga = body["saga"]
    assert saga["saga_type"] == "fare"
    assert saga["status"] == FARE_EXPECTED[scenario]["history"]
    assert [step["name"] for step in body["flow"]["forward"]] == [
        "RegisterFare",
        "ChargeFare",
        "CreditCustomerAccount",
    ]
    submitted = body["timeline"][0]
    assert submitted["type"] == "SubmitFare" and submitted["producer"] == "client"
    assert submitted["payload"]["cc"] == "***" and submitted["payload"]["cvv"] == "***"
    return body


async def assert_card_nowhere_in_clear(stack: Stack) -> None:
    """Not in any database of the stack (outbox and history included)."""
    for service, url in stack.database_urls.items():
        tables = await fetch(
            url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        for table in (row["table_name"] for row in tables):
            rows = await fetch(url, f'SELECT t::text AS row FROM "{table}" AS t')
            for row in rows:
                for clear in CARD_IN_CLEAR:
                    assert clear not in row["row"], f"card in clear in {service}.{table}"


@pytest.mark.parametrize("scenario", FARE_SCENARIOS)
async def test_fare_scenario_ends_as_the_lab_does(
    stack: Stack, watcher: SagaWatcher, scenario: str
) -> None:
    fare_id = fresh_fare_id()
    await watcher.start(FARE, sample_fare(scenario, fare_id=fare_id))
    events = await watcher.wait(fare_id, timeout=30)
    await assert_fare_end_state(stack, scenario, fare_id, events)
    await assert_history(stack, scenario, fare_id, len(events))


async def test_the_labs_own_fare_from_the_management_ui_completes(
    stack: Stack, watcher: SagaWatcher, management_url: str
) -> None:
    vhost = unquote(urlsplit(stack.amqp_url).path.lstrip("/")) or "/"
    fare_id = fresh_fare_id()
    # Exactly the lab's JSON, typed into the form: no headers, no content type.
    payload = json.dumps({**LAB_FARE, "fareId": fare_id}, indent=2)
    try:
        result = management_publish(
            management_url,
            vhost,
            "fare.submitted",
            payload,
            user=f"{stack.broker.prefix}client",
            password=stack.broker.passwords["client"],
        )
    except OSError as exc:
        pytest.skip(f"RabbitMQ management API not reachable at {management_url}: {exc}")
    assert result == {"routed": True}
    events = await watcher.wait(fare_id, timeout=30)
    await assert_fare_end_state(stack, "ok", fare_id, events)
    async with httpx.AsyncClient() as http:
        fare = (await http.get(f"{stack.fare_api}/fares/{fare_id}")).json()
    assert fare["fareStatus"] == "completed" and fare["cardLast4"] == "2424"
    assert "cc" not in fare and "cvv" not in fare


async def test_the_same_fare_twice_is_one_saga(stack: Stack, watcher: SagaWatcher) -> None:
    fare_id = fresh_fare_id()
    fare = sample_fare("ok", fare_id=fare_id)
    await watcher.start(FARE, fare, message_id="first")
    await watcher.start(FARE, fare, message_id="second")
    await watcher.wait(fare_id, timeout=30)

    async def registered_once() -> bool:
        rows = await fetch(
            stack.database_urls["fare"],
            "SELECT count(*) AS n FROM outbox WHERE correlation_id = $1"
            " AND message_type = 'FareRegistered'",
            fare_id,
        )
        health = stack.health("fare")
        duplicates = health["consumers"]["fare.register_fare"]["duplicates"] if health else 0
        return rows[0]["n"] == 1 and duplicates >= 1

    await eventually(registered_once)
    await assert_fare_end_state(stack, "ok", fare_id, watcher.events(fare_id))


async def test_an_invalid_fare_is_rejected_naming_the_field(
    stack: Stack, watcher: SagaWatcher
) -> None:
    fare_id = fresh_fare_id()
    await watcher.start(FARE, {**sample_fare("ok", fare_id=fare_id), "fareAmount": "$twenty"})

    async def rejected() -> list[dict[str, Any]]:
        return [e for e in watcher.events(fare_id) if e["type"] == "FareRejected"]

    (event,) = await eventually(rejected)
    assert event["fields"] == ["fareAmount"]
    assert (
        await fetch(stack.database_urls["fare"], "SELECT 1 FROM fares WHERE fare_id = $1", fare_id)
        == []
    )


async def test_the_history_lists_fares_apart_and_no_card_is_kept_in_clear(
    stack: Stack, watcher: SagaWatcher
) -> None:
    fare_id = fresh_fare_id()
    await watcher.start(FARE, sample_fare("fail_credit", fare_id=fare_id))
    events = await watcher.wait(fare_id, timeout=30)
    await assert_history(stack, "fail_credit", fare_id, len(events))
    async with httpx.AsyncClient(base_url=stack.history_url) as http:
        fares = (await http.get("/sagas", params={"type": "fare", "limit": 500})).json()
        bad = await http.get("/sagas", params={"type": "sideways"})
    assert {saga["saga_type"] for saga in fares["sagas"]} == {"fare"}
    assert fare_id in {saga["saga_id"] for saga in fares["sagas"]}
    assert bad.status_code == 400 and "unknown saga type" in bad.json()["error"]
    await assert_card_nowhere_in_clear(stack)
