"""The saga history (recorder, API, CLI) and the metrics, against the services running as
processes with the sample's faults."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import httpx
import pytest

from contracts.samples import SCENARIOS, fresh_order_id, sample_order
from saga_log.ops.client import SagaWatcher
from tests.support import ROOT, Stack, eventually, publish_as

HISTORY_STATUS = {
    "ok": "succeeded",
    "1": "failed",
    "2": "failed",
    "3": "failed",
    "11": "needs_attention",
    "22": "needs_attention",
    "33": "needs_attention",
}


@pytest.fixture(scope="module")
async def sagas(stack: Stack) -> dict[str, tuple[str, list[dict]]]:
    """One saga of each scenario, run to its end: scenario -> (order_id, events seen)."""
    placed: dict[str, tuple[str, list[dict]]] = {}
    async with SagaWatcher(stack.amqp_url) as watcher:
        for scenario in SCENARIOS:
            order_id = fresh_order_id(scenario)
            await watcher.place(sample_order(scenario, order_id=order_id))
            placed[scenario] = (order_id, [])
        for scenario, (order_id, _) in placed.items():
            placed[scenario] = (order_id, await watcher.wait(order_id, timeout=30))
    return placed


async def recorded(stack: Stack, order_id: str, count: int) -> dict:
    async with httpx.AsyncClient(base_url=stack.history_url) as http:

        async def complete() -> dict:
            response = await http.get(f"/sagas/{order_id}")
            body = response.json() if response.status_code == 200 else {}
            return body if body and len(body["timeline"]) == count else {}

        return await eventually(complete)


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_history_tells_each_sagas_true_path(
    stack: Stack, sagas: dict[str, tuple[str, list[dict]]], scenario: str
) -> None:
    order_id, events = sagas[scenario]
    body = await recorded(stack, order_id, len(events))
    assert body["saga"]["status"] == HISTORY_STATUS[scenario]
    assert sorted(e["type"] for e in body["timeline"]) == sorted(e["type"] for e in events)
    assert {e["message_id"] for e in body["timeline"] if e["type"] != "PlaceOrder"} == {
        e["message_id"] for e in events if e["type"] != "PlaceOrder"
    }
    producers = {e["type"]: e["producer"] for e in body["timeline"]}
    assert producers["PlaceOrder"] == "client"
    for event in body["timeline"]:
        assert event["payload"]["order_id"] == order_id
        assert event["received_at"]
        if event["type"] != "PlaceOrder":
            assert event["causation_id"]
            assert event["headers"]["producer"] == event["producer"]


async def test_history_lists_and_counts_by_status(
    stack: Stack, sagas: dict[str, tuple[str, list[dict]]]
) -> None:
    for order_id, events in sagas.values():
        await recorded(stack, order_id, len(events))
    async with httpx.AsyncClient(base_url=stack.history_url) as http:
        failed = (await http.get("/sagas", params={"status": "failed", "limit": 500})).json()
        everything = (await http.get("/sagas", params={"limit": 2, "offset": 0})).json()
        bad = await http.get("/sagas", params={"status": "sideways"})
    failed_ids = {saga["saga_id"] for saga in failed["sagas"]}
    assert {sagas[s][0] for s in ("1", "2", "3")} <= failed_ids
    assert sagas["ok"][0] not in failed_ids
    assert failed["counts"]["needs_attention"] >= 3
    assert len(everything["sagas"]) == 2 and everything["total"] >= 7
    assert bad.status_code == 400 and "unknown status" in bad.json()["error"]


async def test_an_event_delivered_twice_is_recorded_once(
    stack: Stack, sagas: dict[str, tuple[str, list[dict]]]
) -> None:
    order_id, events = sagas["ok"]
    await recorded(stack, order_id, len(events))
    created = next(e for e in events if e["type"] == "OrderCreated")
    # Replayed by an operator to the recorder only, through its holding exchange.
    await publish_as(
        stack.broker,
        "operator",
        json.dumps(created).encode(),
        "saga_log.record",
        exchange="saga_log.holding",
        message_id=created["message_id"],
    )

    def duplicates() -> int:
        health = stack.health("saga_log")
        return int(health["consumers"]["saga_log.record"]["duplicates"]) if health else 0

    await eventually(lambda: _true(duplicates() >= 1))
    body = await recorded(stack, order_id, len(events))
    assert [e["type"] for e in body["timeline"]].count("OrderCreated") == 1


def test_cli_prints_the_saga_as_the_history_has_it(
    stack: Stack, sagas: dict[str, tuple[str, list[dict]]]
) -> None:
    order_id, _ = sagas["33"]
    command = [
        sys.executable,
        "-m",
        "saga_log",
        "show",
        order_id,
        "--history-url",
        stack.history_url,
    ]
    shown = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert shown.returncode == 0, shown.stderr
    assert f"order saga {order_id}: needs_attention" in shown.stdout
    assert re.search(
        r"ReleaseInventory\s+compensation\s+failed\s+\S+\s+ErrReleaseInventory", shown.stdout
    )
    assert re.search(r"ProcessRefund\s+compensation\s+pending", shown.stdout)
    assert "InventoryReleaseFailed" in shown.stdout

    listing = subprocess.run(
        [
            sys.executable,
            "-m",
            "saga_log",
            "list",
            "--status",
            "needs_attention",
            "--history-url",
            stack.history_url,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert listing.returncode == 0, listing.stderr
    assert order_id in listing.stdout
    assert sagas["ok"][0] not in listing.stdout

    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "saga_log",
            "show",
            "no-such-saga",
            "--history-url",
            stack.history_url,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert missing.returncode == 1 and "no saga no-such-saga" in missing.stderr


async def test_every_service_reports_its_counts_on_metrics(
    stack: Stack, sagas: dict[str, tuple[str, list[dict]]]
) -> None:
    async with httpx.AsyncClient() as http:
        pages = {
            service: (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            for service, port in stack.ports.items()
        }
    order = pages["order"]
    # Every count carries the saga type.
    handled = (
        r'saga_messages_total\{{outcome="handled",queue="{}",saga="order",service="{}",'
        r'type="{}"\}} [1-9]'
    )
    assert re.search(handled.format("order.process_order", "order", "PlaceOrder"), order)
    assert re.search(
        r'saga_duration_seconds_count\{outcome="succeeded",saga="order",service="order"\} [1-9]',
        order,
    )
    assert re.search(
        r'saga_duration_seconds_count\{outcome="failed",saga="order",service="order"\} [1-9]',
        order,
    )
    assert re.search(r'saga_outbox_lag_seconds\{service="order"\} ', order)
    assert re.search(r'saga_outbox_published_total\{service="payment"\} [1-9]', pages["payment"])
    assert re.search(
        handled.format("inventory.reserve_inventory", "inventory", "PaymentDebited"),
        pages["inventory"],
    )
    assert re.search(
        r'saga_messages_total\{outcome="handled",queue="saga_log.record",saga="order"',
        pages["saga_log"],
    )


async def _true(value: bool) -> bool:
    return value
