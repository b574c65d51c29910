"""`python -m saga_log order --scenario 2`: place a sample order and follow its saga."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from typing import Any

import httpx

from contracts.samples import EXPECTED, SCENARIOS, fresh_order_id, sample_order
from saga_log.client import TERMINAL_TYPES, SagaWatcher


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m saga_log", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    order = commands.add_parser("order", help="place a sample order and print its outcome")
    order.add_argument("--scenario", choices=SCENARIOS, default="ok")
    order.add_argument("--order-id", help="use this order_id instead of a fresh one")
    order.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (60)")
    order.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    order.add_argument(
        "--order-api",
        default=os.environ.get(
            "ORDER_API_URL", f"http://127.0.0.1:{os.environ.get('ORDER_HTTP_PORT', '8000')}"
        ),
    )
    args = parser.parse_args(argv)
    sys.exit(asyncio.run(_order(args)))


async def _order(args: argparse.Namespace) -> int:
    order_id = args.order_id or fresh_order_id(args.scenario)
    payload = sample_order(args.scenario, order_id=order_id)
    print(f"placing order {order_id} (scenario {args.scenario}) on {_safe(args.amqp_url)}")
    try:
        async with SagaWatcher(args.amqp_url) as watcher:
            await watcher.place(payload)
            seen = 0
            loop = asyncio.get_running_loop()
            deadline = loop.time() + args.timeout
            while True:
                events = watcher.events(order_id)
                for event in events[seen:]:
                    print(f"  {event.get('producer', 'client'):>9}  {_describe(event)}")
                seen = len(events)
                if any(event["type"] in TERMINAL_TYPES for event in events):
                    break
                if loop.time() > deadline:
                    print(
                        f"no outcome after {args.timeout:.0f} s. Are the services running "
                        "(`make up` or `make dev`)? Their logs say what they are doing.",
                        file=sys.stderr,
                    )
                    return 1
                with contextlib.suppress(TimeoutError):
                    await watcher.wait(order_id, timeout=0.2)
    except OSError as exc:
        print(f"cannot reach RabbitMQ at {_safe(args.amqp_url)}: {exc}", file=sys.stderr)
        return 2
    expected = EXPECTED[args.scenario]
    print(f"expected (SEED_BEHAVIOUR.md with SAGA_FAULTS=seed): {json.dumps(expected)}")
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(f"{args.order_api}/orders/{order_id}")
        print(f"GET /orders/{order_id} -> {response.status_code}")
        print(json.dumps(response.json(), indent=2))
    except httpx.HTTPError as exc:
        print(f"order API at {args.order_api} not reachable: {exc}", file=sys.stderr)
    return 0


def _describe(event: dict[str, Any]) -> str:
    detail = {
        key: event[key]
        for key in (
            "error",
            "cause",
            "step",
            "transaction_id",
            "amount",
            "order_status",
            "failed_compensation",
            "compensation_error",
        )
        if event.get(key) is not None
    }
    return f"{event['type']:<24} {json.dumps(detail)}"


def _safe(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
