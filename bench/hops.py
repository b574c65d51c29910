"""Where one saga's latency goes, hop by hop, from its spans (saga_log.runtime.tracing).

The services are restarted with `SAGA_TRACE_FILE` (one JSON-lines file per service in a
temporary directory), sagas of the success mix run one at a time on the idle stack, the
services are stopped (which flushes their spans) and the files are read back. Each saga is
one trace (its id derived from the order id), so its spans are found without guessing.

For each hop, the message's way from the producer's commit to the consumer's commit:

    outbox wait      the row waits from its commit to the start of its publish (relay)
    publish+confirm  the publish until RabbitMQ's publisher confirm (off the critical path:
                     the consumer may have the message before the producer has its confirm)
    transit          the publish's start to the consumer's arrival (the broker)
    receive          decode and producer check
    handle           the transaction up to its commit: inbox claim, locks, handler
    commit           the commit (fsync)
    hop              the previous hop's commit (for the order, the client's publish) to this
                     hop's commit (for the last, the client's arrival): the hops add up to
                     the end-to-end latency

The first hop's publish is the client's own (its confirm timed by the client); the last
hop ends at the client, which has no spans (its arrival is timed by the client).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika

from bench.host import CpuTicks, steal_note
from contracts.samples import fresh_order_id, sample_order
from saga_log.runtime.tracing import saga_trace_id
from tests.support import Stack

#: The success path of the order saga: (label, the message's publish span or None for the
#: client's, the consumer's process span or None for the client).
HOPS: tuple[tuple[str, str | None, str | None], ...] = (
    ("PlaceOrder → order", None, "order.process_order process"),
    ("OrderCreated → payment", "order.created publish", "payment.debit_payment process"),
    (
        "PaymentDebited → inventory",
        "payment.debited publish",
        "inventory.reserve_inventory process",
    ),
    ("InventoryReserved → order", "inventory.reserved publish", "order.conclude_saga process"),
    ("OrderSucceeded → client", "order.succeeded publish", None),
)
MEASURES = ("receive", "handle", "commit", "outbox wait", "publish+confirm", "transit", "hop")
WARMUP = 3  # sagas run first and not counted: the restarted services warm their pools


@dataclass
class ClientTimes:
    """What the client saw of one saga, in ns since the epoch (the spans' clock)."""

    order_id: str
    published: int
    confirmed: int
    arrived: int = 0


async def drive(amqp_url: str, sagas: int, *, pause: float = 0.1) -> list[ClientTimes]:
    """Run `sagas` success sagas one after the other (each waits for the previous one's
    terminal event, then `pause` seconds for the history to settle)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("saga.events", ensure=True)
        queue = await channel.declare_queue(f"watch.bench-hops-{uuid.uuid4().hex}", exclusive=True)
        for key in ("order.succeeded", "order.failed"):
            await queue.bind(exchange, key)
        arrivals: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

        async def on_terminal(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            arrived = time.time_ns()
            await arrivals.put((json.loads(message.body)["order_id"], arrived))

        await queue.consume(on_terminal, no_ack=True)
        times: list[ClientTimes] = []
        for _ in range(sagas):
            order_id = fresh_order_id("ok")
            body = json.dumps(sample_order("ok", order_id=order_id)).encode()
            published = time.time_ns()
            await exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key="order.placed",
            )
            saga = ClientTimes(order_id, published, time.time_ns())
            while True:
                finished, arrived = await asyncio.wait_for(arrivals.get(), timeout=60)
                if finished == order_id:
                    saga.arrived = arrived
                    break
            times.append(saga)
            await asyncio.sleep(pause)
        return times


def read_spans(paths: Iterable[Path]) -> dict[str, list[dict[str, Any]]]:
    """Every span of the files, by trace id."""
    traces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                span = json.loads(line)
                traces[span["trace_id"]].append(span)
    return traces


def breakdown(spans: list[dict[str, Any]], client: ClientTimes) -> dict[str, dict[str, float]]:
    """Milliseconds of each measure of each hop of one saga (absent: not measured)."""
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        by_name[span["name"]].append(span)

    def only(name: str) -> dict[str, Any]:
        (span,) = by_name[name]  # a redelivery or a republish: the saga is not counted
        return span

    def child(parent: dict[str, Any], name: str) -> dict[str, Any]:
        (span,) = [s for s in by_name[name] if s["parent_id"] == parent["span_id"]]
        return span

    def ms(start: int, end: int) -> float:
        return (end - start) / 1e6

    result: dict[str, dict[str, float]] = {}
    previous_commit = client.published
    for label, publish_name, process_name in HOPS:
        hop: dict[str, float] = {}
        if publish_name is None:
            sent = client.published
            hop["publish+confirm"] = ms(client.published, client.confirmed)
        else:
            publish = only(publish_name)
            wait, confirm = child(publish, "outbox wait"), child(publish, "confirm")
            sent = confirm["start"]
            hop["outbox wait"] = ms(wait["start"], wait["end"])
            hop["publish+confirm"] = ms(confirm["start"], confirm["end"])
        if process_name is None:
            hop["transit"] = ms(sent, client.arrived)
            hop["hop"] = ms(previous_commit, client.arrived)
        else:
            process = only(process_name)
            hop["transit"] = ms(sent, process["start"])
            for step in ("receive", "handle", "commit"):
                span = child(process, step)
                hop[step] = ms(span["start"], span["end"])
            committed = child(process, "commit")["end"]
            hop["hop"] = ms(previous_commit, committed)
            previous_commit = committed
        result[label] = hop
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summarise(sagas: list[dict[str, dict[str, float]]], end_to_end: list[float]) -> dict[str, Any]:
    """p50 and p99 of every measure of every hop, and of the end-to-end latency."""
    hops: dict[str, dict[str, dict[str, float]]] = {}
    for label, _, _ in HOPS:
        hops[label] = {}
        for measure in MEASURES:
            values = [saga[label][measure] for saga in sagas if measure in saga[label]]
            if values:
                hops[label][measure] = {
                    "p50_ms": round(percentile(values, 0.5), 3),
                    "p99_ms": round(percentile(values, 0.99), 3),
                }
    return {
        "sagas": len(sagas),
        "end_to_end": {
            "p50_ms": round(percentile(end_to_end, 0.5), 3),
            "p99_ms": round(percentile(end_to_end, 0.99), 3),
        },
        "hops": hops,
    }


def print_table(summary: dict[str, Any]) -> None:
    label_width = max(len(label) for label, _, _ in HOPS) + 2
    print(f"per-hop breakdown, ms p50/p99, {summary['sagas']} sagas one at a time:")
    print(" " * label_width + "".join(f"{measure:>17}" for measure in MEASURES))
    for label, _, _ in HOPS:
        cells = []
        for measure in MEASURES:
            figures = summary["hops"][label].get(measure)
            cell = f"{figures['p50_ms']:.2f} / {figures['p99_ms']:.2f}" if figures else "-"
            cells.append(f"{cell:>17}")
        print(f"{label:<{label_width}}" + "".join(cells))
    hops_p50 = sum(h["hop"]["p50_ms"] for h in summary["hops"].values() if "hop" in h)
    e2e = summary["end_to_end"]
    print(
        f"end to end: p50 {e2e['p50_ms']:.2f} ms, p99 {e2e['p99_ms']:.2f} ms "
        f"(the hops' p50s add up to {hops_p50:.2f} ms)"
    )


def measure(stack: Stack, services: Iterable[str], *, sagas: int) -> dict[str, Any]:
    """Restart `services` tracing to files, run `sagas` sagas one at a time, stop the
    services (their spans are flushed then), print the per-hop table; returns the figures."""
    services = list(services)
    with tempfile.TemporaryDirectory(prefix="saga-hops-") as directory:
        files = {service: Path(directory) / f"{service}.jsonl" for service in services}
        print(f"hops: restarting {', '.join(services)} with SAGA_TRACE_FILE ...", flush=True)
        for service in services:
            stack.stop(service)
        for service in services:
            stack.start(service, SAGA_TRACE_FILE=str(files[service]))
        ticks = CpuTicks.now()
        try:
            times = asyncio.run(drive(stack.amqp_url, WARMUP + sagas))[WARMUP:]
        finally:
            steal = CpuTicks.now().steal_percent_since(ticks)
            for service in services:
                stack.stop(service)  # SIGTERM: each flushes its spans on the way out
        traces = read_spans(files.values())
    measured: list[dict[str, dict[str, float]]] = []
    end_to_end: list[float] = []
    for saga in times:
        spans = traces.get(f"{saga_trace_id('order', saga.order_id):032x}", [])
        try:
            measured.append(breakdown(spans, saga))
        except ValueError:  # a span missing or twice (a redelivery): not a clean sample
            continue
        end_to_end.append((saga.arrived - saga.published) / 1e6)
    summary = summarise(measured, end_to_end)
    summary["host_steal_percent"] = steal
    print_table(summary)
    print(f"  {steal_note(steal)}")
    return summary
