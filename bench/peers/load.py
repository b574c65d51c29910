"""The load the peers are measured under, the same shapes as ours (bench/run.py): one saga at
a time, then closed loops (N sagas in flight, every completion starts the next one),
measured after a warm-up. Each saga is timed from the call that starts it to its result.

Runs inside a peer's own process and venv (standard library only). The harness passes the
phases as a JSON file; each phase's raw figures go to stdout as one JSON line, so that the
harness computes every percentile with the same function as ours.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

Call = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def fresh_order(template: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The sample's order with a new order_id of the scenario's prefix (as
    contracts.samples.fresh_order_id makes them)."""
    random = str(uuid.uuid4())
    return {**template, "order_id": prefix + random[len(prefix) :]}


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.outcomes: dict[str, int] = {}
        self.errors: list[str] = []

    def outcome(self, result: dict[str, Any]) -> None:
        key = str(result.get("terminal"))
        self.outcomes[key] = self.outcomes.get(key, 0) + 1

    def error(self, exc: BaseException) -> None:
        self.outcomes["error"] = self.outcomes.get("error", 0) + 1
        if len(self.errors) < 5:
            self.errors.append(f"{type(exc).__name__}: {exc}"[:300])


async def scenarios(call: Call, orders: list[dict[str, Any]]) -> dict[str, Any]:
    """Each of the sample's scenarios once, one after the other."""
    results = []
    for order in orders:
        try:
            results.append({"order_id": order["order_id"], "result": await call(order)})
        except Exception as exc:
            results.append({"order_id": order["order_id"], "error": f"{type(exc).__name__}: {exc}"})
    return {"phase": "scenarios", "results": results}


async def sequential(call: Call, spec: dict[str, Any], count: int, warmup: int) -> dict[str, Any]:
    tally = Tally()
    for i in range(warmup + count):
        order = fresh_order(spec["template"], spec["prefix"])
        began = time.perf_counter()
        try:
            result = await call(order)
        except Exception as exc:
            tally.error(exc)
            continue
        elapsed = time.perf_counter() - began
        if i >= warmup:
            tally.latencies.append(elapsed)
            tally.outcome(result)
    return {
        "phase": "sequential",
        "sagas": len(tally.latencies),
        "latencies": tally.latencies,
        "outcomes": tally.outcomes,
        "errors": tally.errors,
    }


async def closed(
    call: Call, spec: dict[str, Any], in_flight: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """`in_flight` callers, each starting its next saga when its last one ends, until the
    window closes; the sagas that end inside the window [warm-up, warm-up + seconds) count."""
    tally = Tally()
    began = time.perf_counter()
    opens, closes = began + warmup, began + warmup + seconds

    async def caller() -> None:
        while time.perf_counter() < closes:
            order = fresh_order(spec["template"], spec["prefix"])
            start = time.perf_counter()
            try:
                result = await call(order)
            except Exception as exc:
                tally.error(exc)
                await asyncio.sleep(0.1)
                continue
            end = time.perf_counter()
            if opens <= end < closes:
                tally.latencies.append(end - start)
                tally.outcome(result)

    await asyncio.gather(*(caller() for _ in range(in_flight)))
    return {
        "phase": "closed",
        "in_flight": in_flight,
        "seconds": seconds,
        "sagas": len(tally.latencies),
        "latencies": tally.latencies,
        "outcomes": tally.outcomes,
        "errors": tally.errors,
    }


async def run_phases(call: Call, spec: dict[str, Any]) -> None:
    """Every phase of `spec`, in order, each reported as one JSON line on stdout."""
    if spec.get("scenarios"):
        emit(await scenarios(call, spec["scenarios"]))
    if spec.get("sequential"):
        s = spec["sequential"]
        emit(await sequential(call, spec, s["count"], s["warmup"]))
        await asyncio.sleep(spec.get("pause", 2.0))
    for c in spec.get("closed", []):
        emit(await closed(call, spec, c["in_flight"], c["seconds"], c["warmup"]))
        await asyncio.sleep(spec.get("pause", 2.0))
    emit({"phase": "done"})


def read_spec(path: str) -> dict[str, Any]:
    with open(path) as f:
        spec: dict[str, Any] = json.load(f)
    return spec
