"""Commands for people: start a sample saga and follow it, and read the saga history.

python -m saga_log order --scenario 2        place a sample order, print its events
python -m saga_log fare --scenario fail_auth submit a sample fare, print its events
python -m saga_log show <saga_id>            one saga's steps and timeline
python -m saga_log list [--type T] [--status S]   the sagas, newest first
python -m saga_log stuck                     running sagas with no event past the deadline

python -m saga_log parked                    messages parked for an operator
python -m saga_log redrive --saga-id ID      send a saga's parked messages back (cause fixed)
python -m saga_log dead-letters              messages that could never be valid, and why
python -m saga_log inspect MESSAGE_ID        one held message in full
python -m saga_log replay|discard ...        send dead letters back, or drop held messages
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from datetime import datetime
from typing import Any

import httpx

from contracts import FARE, ORDER, SAGAS_BY_NAME, Saga
from contracts.samples import (
    EXPECTED,
    FARE_EXPECTED,
    FARE_SCENARIOS,
    SCENARIOS,
    fresh_fare_id,
    fresh_order_id,
    sample_fare,
    sample_order,
)
from saga_log.ops.client import TERMINAL_TYPES, SagaWatcher
from saga_log.ops.env import broker_url, http_headers
from saga_log.ops.operator import DEAD, PARKED, HeldMessage, list_held, send_back


def main(argv: list[str] | None = None) -> None:
    # Piped into `head`, a table stops quietly rather than with a traceback.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = argparse.ArgumentParser(
        prog="python -m saga_log",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, what, scenarios, id_flag, api, port in (
        ("order", "place a sample order", SCENARIOS, "order-id", "ORDER", "8000"),
        ("fare", "submit a sample fare", FARE_SCENARIOS, "fare-id", "FARE", "8003"),
    ):
        start = commands.add_parser(name, help=f"{what} and print its outcome")
        start.add_argument("--scenario", choices=scenarios, default="ok")
        start.add_argument(f"--{id_flag}", help="use this id instead of a fresh one")
        start.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (60)")
        start.add_argument("--amqp-url", default=broker_url("client"), help="RabbitMQ, as a client")
        local = f"http://127.0.0.1:{os.environ.get(f'{api}_HTTP_PORT', port)}"
        start.add_argument(f"--{name}-api", default=os.environ.get(f"{api}_API_URL", local))
    history = argparse.ArgumentParser(add_help=False)
    history.add_argument(
        "--history-url",
        default=os.environ.get(
            "SAGA_LOG_URL", f"http://127.0.0.1:{os.environ.get('SAGA_LOG_HTTP_PORT', '8080')}"
        ),
        help="the saga history's HTTP API (SAGA_LOG_URL)",
    )
    show = commands.add_parser("show", parents=[history], help="one saga's steps and timeline")
    show.add_argument("saga_id")
    show.add_argument("--type", choices=sorted(SAGAS_BY_NAME), help="if two sagas share the id")
    listing = commands.add_parser("list", parents=[history], help="the sagas, newest first")
    listing.add_argument("--type", choices=sorted(SAGAS_BY_NAME), help="only sagas of this type")
    listing.add_argument("--status", help="running, succeeded, failed, needs_attention or stuck")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--offset", type=int, default=0)
    stuck = commands.add_parser(
        "stuck", parents=[history], help="running sagas with no event for longer than the deadline"
    )
    stuck.add_argument("--limit", type=int, default=50)
    broker = argparse.ArgumentParser(add_help=False)
    broker.add_argument(
        "--amqp-url", default=broker_url("operator"), help="RabbitMQ, as an operator"
    )
    broker.add_argument("--queue", help="only this work queue (e.g. payment.refund_payment)")
    choose = argparse.ArgumentParser(add_help=False, parents=[broker])
    choose.add_argument(
        "--saga-id", "--order-id", "--fare-id", dest="saga_id", help="only this saga's messages"
    )
    choose.add_argument("--message-id", help="only this message")
    choose.add_argument("--all", action="store_true", help="every held message")
    commands.add_parser("parked", parents=[broker], help="messages parked for an operator")
    commands.add_parser(
        "redrive", parents=[choose], help="send parked messages back to their work queue"
    )
    commands.add_parser("dead-letters", parents=[broker], help="messages that can never be valid")
    commands.add_parser(
        "replay", parents=[choose], help="send dead letters back to their work queue"
    )
    discard = commands.add_parser("discard", parents=[choose], help="drop held messages")
    discard.add_argument("--from", dest="held", choices=(PARKED, DEAD), default=DEAD)
    inspect = commands.add_parser("inspect", parents=[broker], help="one held message in full")
    inspect.add_argument("message_id")
    args = parser.parse_args(argv)
    if args.command in {"order", "fare"}:
        sys.exit(asyncio.run(_start(args)))
    if args.command in {"parked", "dead-letters", "redrive", "replay", "discard", "inspect"}:
        sys.exit(asyncio.run(_operate(args)))
    try:
        with httpx.Client(base_url=args.history_url, timeout=10, headers=http_headers()) as http:
            if args.command == "show":
                sys.exit(_show(http, args.saga_id, args.type))
            status = "stuck" if args.command == "stuck" else args.status
            saga_type = getattr(args, "type", None)
            sys.exit(_list(http, status, saga_type, args.limit, getattr(args, "offset", 0)))
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code != 401:
            raise
        print(
            f"the saga history at {args.history_url} asks for its token: set SAGA_HTTP_TOKEN "
            "(`make up` writes it to .env, which the tools read).",
            file=sys.stderr,
        )
        sys.exit(2)
    except httpx.HTTPError as exc:
        print(
            f"the saga history at {args.history_url} is not reachable ({exc}). Is it running "
            "(`make up`, `make dev`)? Set SAGA_LOG_URL if it listens elsewhere.",
            file=sys.stderr,
        )
        sys.exit(2)


async def _operate(args: argparse.Namespace) -> int:
    try:
        if args.command in {"parked", "dead-letters"}:
            kind = PARKED if args.command == "parked" else DEAD
            held = await list_held(args.amqp_url, kind, args.queue)
            _print_held(held, kind)
            return 0
        if args.command == "inspect":
            for kind in (PARKED, DEAD):
                for message in await list_held(args.amqp_url, kind, args.queue):
                    if message.message_id == args.message_id:
                        print(json.dumps(message.as_json(), indent=2))
                        return 0
            print(f"no parked or dead-lettered message {args.message_id}", file=sys.stderr)
            return 1
        if not (args.all or args.saga_id or args.message_id or args.queue):
            print("say which: --saga-id, --message-id, --queue or --all", file=sys.stderr)
            return 2
        kind = {"redrive": PARKED, "replay": DEAD}.get(args.command) or args.held

        def chosen(message: HeldMessage) -> bool:
            return (
                (args.saga_id is None or message.saga_id == args.saga_id)
                and (args.message_id is None or message.message_id == args.message_id)
                and (args.queue is None or args.queue in (message.queue, message.work_queue))
            )

        done = await send_back(args.amqp_url, kind, chosen, discard=args.command == "discard")
    except OSError as exc:
        print(f"cannot reach RabbitMQ at {_safe(args.amqp_url)}: {exc}", file=sys.stderr)
        return 2
    verb = {"redrive": "redriven", "replay": "replayed", "discard": "discarded"}[args.command]
    for message in done:
        where = "dropped" if args.command == "discard" else f"-> {message.work_queue}"
        print(f"{verb}: {message.type} {message.message_id} (saga {message.saga_id}) {where}")
    print(f"{len(done)} message(s) {verb}")
    return 0 if done else 1


def _print_held(held: list[HeldMessage], kind: str) -> None:
    what = "parked" if kind == PARKED else "dead-lettered"
    print(f"{len(held)} {what} message(s)\n")
    if not held:
        return
    _table(
        ["saga", "queue", "type", "retries", "since", "message id", "reason"],
        [
            [
                m.saga_id or "",
                m.queue,
                m.type or "",
                str(m.attempts),
                (m.held_at or "")[:19],
                m.message_id or "",
                m.reason[:120],
            ]
            for m in held
        ],
    )


def _show(http: httpx.Client, saga_id: str, saga_type: str | None) -> int:
    response = http.get(f"/sagas/{saga_id}", params={"type": saga_type} if saga_type else {})
    if response.status_code == 404:
        print(f"no saga {saga_id} in the history", file=sys.stderr)
        return 1
    if response.status_code == 409:
        types = ", ".join(response.json().get("types", []))
        print(f"several sagas have the id {saga_id} ({types}): add --type", file=sys.stderr)
        return 2
    response.raise_for_status()
    body = response.json()
    saga = body["saga"]
    print(f"{saga['saga_type']} saga {saga['saga_id']}: {saga['status']}")
    for label in ("current_step", "cause", "attention", "started_at", "ended_at"):
        if saga.get(label):
            print(f"  {label:<13} {saga[label]}")
    if saga.get("expecting"):
        print(f"  {'expecting':<13} {' or '.join(saga['expecting'])}")
    if saga.get("duration_ms") is not None:
        print(f"  {'duration':<13} {saga['duration_ms']:.1f} ms")
    print()
    _table(
        ["step", "kind", "status", "ms", "error"],
        [
            [s["name"], s["kind"], s["status"], _ms(s["duration_ms"]), s["error"] or ""]
            for s in saga["steps"]
        ],
    )
    print()
    start = _when(body["timeline"][0]) if body["timeline"] else None
    rows = []
    for event in body["timeline"]:
        offset = (_when(event) - start).total_seconds() * 1000 if start else 0.0
        rows.append(
            [f"+{offset:.1f}", event["type"], event["producer"] or "", _details(event["payload"])]
        )
    _table(["ms", "event", "producer", "detail"], rows)
    return 0


def _list(
    http: httpx.Client, status: str | None, saga_type: str | None, limit: int, offset: int
) -> int:
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if status:
        params["status"] = status
    if saga_type:
        params["type"] = saga_type
    response = http.get("/sagas", params=params)
    if response.status_code == 400:
        print(response.json().get("error", response.text), file=sys.stderr)
        return 2
    response.raise_for_status()
    body = response.json()
    counts = ", ".join(f"{name} {count}" for name, count in body["counts"].items())
    print(f"sagas: {counts}")
    shown = f" with status {status}" if status else ""
    kind = f" {saga_type}" if saga_type else ""
    print(f"showing {len(body['sagas'])} of {body['total']}{kind} sagas{shown}\n")
    _table(
        ["type", "saga", "status", "step", "started", "ms", "cause / attention"],
        [
            [
                s["saga_type"],
                s["saga_id"],
                s["status"],
                s["current_step"] or "",
                (s["started_at"] or "")[:23],
                _ms(s["duration_ms"]),
                s["attention"] or s["cause"] or "",
            ]
            for s in body["sagas"]
        ],
    )
    return 0


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [
        max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)
    ]
    for row in [headers, ["-" * width for width in widths], *rows]:
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _when(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"] or event["received_at"])


async def _start(args: argparse.Namespace) -> int:
    """Start a sample saga, print its events as they come, then what its service shows."""
    saga: Saga = ORDER if args.command == "order" else FARE
    if saga is ORDER:
        saga_id = args.order_id or fresh_order_id(args.scenario)
        payload: dict[str, Any] = sample_order(args.scenario, order_id=saga_id)
        expected, api = EXPECTED[args.scenario], f"{args.order_api}/orders/{saga_id}"
    else:
        saga_id = args.fare_id or fresh_fare_id()
        payload = sample_fare(args.scenario, fare_id=saga_id)
        expected, api = FARE_EXPECTED[args.scenario], f"{args.fare_api}/fares/{saga_id}"
    print(
        f"starting {saga.name} saga {saga_id} (scenario {args.scenario}) on {_safe(args.amqp_url)}"
    )
    try:
        async with SagaWatcher(args.amqp_url) as watcher:
            await watcher.start(saga, payload)
            if not await _follow(watcher, saga_id, args.timeout):
                return 1
    except OSError as exc:
        print(f"cannot reach RabbitMQ at {_safe(args.amqp_url)}: {exc}", file=sys.stderr)
        return 2
    print(f"expected (with SAGA_FAULTS=seed): {json.dumps(expected)}")
    try:
        async with httpx.AsyncClient(timeout=5, headers=http_headers()) as http:
            response = await http.get(api)
        print(f"GET {api} -> {response.status_code}")
        print(json.dumps(response.json(), indent=2))
    except httpx.HTTPError as exc:
        print(f"{api} not reachable: {exc}", file=sys.stderr)
    return 0


async def _follow(watcher: SagaWatcher, saga_id: str, timeout: float) -> bool:
    """Print the saga's events as they arrive until its terminal one; False on timeout."""
    seen = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        events = watcher.events(saga_id)
        for event in events[seen:]:
            print(f"  {event.get('producer', 'client'):>10}  {_describe(event)}")
        seen = len(events)
        if any(event["type"] in TERMINAL_TYPES for event in events):
            return True
        if loop.time() > deadline:
            print(
                f"no outcome after {timeout:.0f} s. Are the services running "
                "(`make up` or `make dev`)? Their logs say what they are doing.",
                file=sys.stderr,
            )
            return False
        with contextlib.suppress(TimeoutError):
            await watcher.wait(saga_id, timeout=0.2)


def _describe(event: dict[str, Any]) -> str:
    return f"{event['type']:<24} {_details(event)}"


def _details(event: dict[str, Any]) -> str:
    detail = {
        key: event[key]
        for key in (
            "error",
            "cause",
            "step",
            "transaction_id",
            "amount",
            "order_status",
            "fareStatus",
            "chargeToken",
            "chargeId",
            "refundId",
            "failed_compensation",
            "compensation_error",
        )
        if event.get(key) is not None
    }
    return json.dumps(detail) if detail else ""


def _safe(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
