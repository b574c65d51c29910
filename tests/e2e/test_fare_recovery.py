"""The fare saga keeps the order saga's guarantees when things go wrong: a failed refund is
parked and redriven once fixed; a fare whose accounting service is down is cancelled by the
fare service, its charge refunded, and the late charge is never left credited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from contracts import FARE
from contracts.samples import fresh_fare_id, sample_fare
from saga_log.ops.client import TERMINAL_TYPES, SagaWatcher
from saga_log.ops.operator import PARKED, list_held
from tests.support import Broker, Stack, eventually, fetch, operator_cli, running_stack

FAST_DEADLINES = {"SAGA_STEP_TIMEOUT": "2", "SAGA_DEADLINE_CHECK_INTERVAL": "0.1"}


@pytest.fixture(scope="module")
def stack(broker: Broker, pg_server_url: str) -> Iterator[Stack]:
    services = ("fare", "payment", "accounting", "saga_log")
    with running_stack(
        broker, pg_server_url, services=services, faults="seed", **FAST_DEADLINES
    ) as stack:
        yield stack


async def one(stack: Stack, service: str, query: str, fare_id: str) -> dict[str, Any] | None:
    rows = await fetch(stack.database_urls[service], query, fare_id)
    assert len(rows) <= 1
    return dict(rows[0]) if rows else None


async def terminals(stack: Stack, fare_id: str) -> list[str]:
    rows = await fetch(
        stack.database_urls["fare"],
        "SELECT message_type FROM outbox WHERE correlation_id = $1 AND message_type = ANY($2)",
        fare_id,
        sorted(TERMINAL_TYPES),
    )
    return [row["message_type"] for row in rows]


async def test_a_failed_refund_is_parked_then_redriven_once_fixed(stack: Stack) -> None:
    fare_id = fresh_fare_id()
    async with SagaWatcher(stack.amqp_url) as watcher:
        await watcher.start(FARE, sample_fare("fail_refund", fare_id=fare_id))
        events = await watcher.wait(fare_id, timeout=30)
    failed = [e for e in events if e["type"] == "FareRefundFailed"]
    assert [(e["step"], e["error"]) for e in failed] == [("RefundFare", "RefundException")]
    (parked,) = [m for m in await list_held(stack.operator_url, PARKED) if m.saga_id == fare_id]
    assert parked.work_queue == "payment.refund_fare"
    assert "RefundFare failed: RefundException" in parked.reason
    fare_query = "SELECT fare_status FROM fares WHERE fare_id = $1"
    assert await one(stack, "fare", fare_query, fare_id) == {"fare_status": None}

    # The cause is fixed: the payment service comes back without the demo faults.
    stack.stop("payment")
    stack.start("payment", SAGA_FAULTS="off")
    redriven = operator_cli(stack, "redrive", "--fare-id", fare_id)
    assert redriven.returncode == 0, redriven.stderr
    assert "1 message(s) redriven" in redriven.stdout

    async def failed_now() -> dict[str, Any] | None:
        fare = await one(stack, "fare", fare_query, fare_id)
        return fare if fare and fare["fare_status"] == "failed" else None

    await eventually(failed_now)
    charge = await one(
        stack, "payment", "SELECT status, refund_id FROM fare_charges WHERE fare_id = $1", fare_id
    )
    assert charge is not None and charge["status"] == "refunded" and charge["refund_id"]
    assert await terminals(stack, fare_id) == ["FareProcessingFailed"]  # one end, redrive or not
    updated = await fetch(
        stack.database_urls["fare"],
        "SELECT 1 FROM outbox WHERE correlation_id = $1 AND message_type = 'FareStatusUpdated'",
        fare_id,
    )
    assert len(updated) == 1
    assert not [m for m in await list_held(stack.operator_url, PARKED) if m.saga_id == fare_id]


async def test_a_fare_whose_accounting_is_down_is_cancelled_and_its_charge_refunded(
    stack: Stack,
) -> None:
    stack.stop("accounting")
    fare_id = fresh_fare_id()
    try:
        async with SagaWatcher(stack.amqp_url) as watcher:
            await watcher.start(FARE, sample_fare("ok", fare_id=fare_id))
            events = await watcher.wait(fare_id, timeout=30)
        terminal = [e for e in events if e["type"] in TERMINAL_TYPES]
        assert [(e["type"], e["error"]) for e in terminal] == [
            ("FareProcessingFailed", "StepTimedOut")
        ]
        assert "FareCancelled" in [e["type"] for e in events]

        async def refunded() -> dict[str, Any] | None:
            charge = await one(
                stack, "payment", "SELECT status FROM fare_charges WHERE fare_id = $1", fare_id
            )
            return charge if charge and charge["status"] == "refunded" else None

        await eventually(refunded)
        assert await one(
            stack, "fare", "SELECT fare_status FROM fares WHERE fare_id = $1", fare_id
        ) == {"fare_status": "failed"}
    finally:
        # Back, with its credits slowed a little: it meets the FareCharged it missed and the
        # cancellation, in whichever order its two queues give them.
        plan = json.dumps({"delay": {"accounting.credit_account": 0.5}})
        stack.start("accounting", SAGA_FAULT_PLAN=plan)

    async def both_handled() -> bool:
        inbox = await fetch(
            stack.database_urls["accounting"],
            "SELECT consumer FROM inbox WHERE consumer = ANY($1) AND message_id = ANY($2)",
            ["accounting.credit_account", "accounting.cancel_credit"],
            [e["message_id"] for e in events if e["type"] in ("FareCharged", "FareCancelled")],
        )
        return len(inbox) == 2

    await eventually(both_handled)
    credits = await fetch(
        stack.database_urls["accounting"],
        "SELECT reversed_at FROM account_credits WHERE fare_id = $1",
        fare_id,
    )
    # Never credited, or credited and then reversed: no credit counts for a refunded fare.
    assert all(row["reversed_at"] is not None for row in credits)
    assert await terminals(stack, fare_id) == ["FareProcessingFailed"]
