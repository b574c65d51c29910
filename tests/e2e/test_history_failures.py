"""The history's own failures do not feed themselves: when it cannot record (its database
failing every time, a fault plan standing in for an outage), what it parks announces
nothing, so there is nothing more for it to fail to record."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from contracts.samples import fresh_order_id, sample_order
from saga_log.ops.client import SagaWatcher
from saga_log.ops.operator import PARKED, list_held
from tests.support import Broker, Stack, eventually, publish_as, running_stack


@pytest.fixture(scope="module")
def failing_history(broker: Broker, pg_server_url: str) -> Iterator[Stack]:
    plan = json.dumps({"transient": {"saga_log.record": 1000}})
    with running_stack(
        broker,
        pg_server_url,
        services=("saga_log",),
        SAGA_FAULT_PLAN=plan,
        SAGA_RETRY_BUDGETS='{"saga_log.record": 1}',
    ) as stack:
        yield stack


async def test_what_the_history_parks_announces_nothing(failing_history: Stack) -> None:
    stack = failing_history
    async with SagaWatcher(stack.amqp_url) as watcher:
        order_id = fresh_order_id("ok")
        body = json.dumps(sample_order("ok", order_id=order_id)).encode()
        await publish_as(stack.broker, "client", body, "order.placed", stamped=False)

        async def parked() -> list:
            held = await list_held(stack.operator_url, PARKED)
            return [m for m in held if m.saga_id == order_id]

        (held,) = await eventually(parked, timeout=30)
        assert held.work_queue == "saga_log.record" and "fault plan" in held.reason

        async def settled() -> dict:
            health = stack.health("saga_log") or {}
            record = health.get("consumers", {}).get("saga_log.record", {})
            return record if record.get("parked") == 1 else {}

        first = await eventually(settled, timeout=30)
        # Another message through the history would be the announcement: there is none.
        probe = fresh_order_id("ok")
        await publish_as(
            stack.broker,
            "client",
            json.dumps(sample_order("ok", order_id=probe)).encode(),
            "order.placed",
            stamped=False,
        )
        await eventually(lambda: _parked_count(stack, 2), timeout=30)
        after = stack.health("saga_log")["consumers"]["saga_log.record"]  # type: ignore[index]
        kinds = [e["type"] for e in watcher.events(order_id)]
    assert "MessageParked" not in kinds
    assert after["retried"] == first["retried"] + 1  # the probe's one retry, nothing else
    assert after["handled"] == 0


async def _parked_count(stack: Stack, count: int) -> bool:
    health = stack.health("saga_log") or {}
    return health.get("consumers", {}).get("saga_log.record", {}).get("parked") == count
