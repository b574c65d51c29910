"""Tracing through the outbox against the real PostgreSQL and RabbitMQ: the order saga's
services and the history, in this process, export to the SDK's in-memory exporter; each
saga is one trace, every step's spans are there, and each span has the right parent."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from types import ModuleType
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from contracts import CONSUMERS
from contracts.samples import fresh_order_id, sample_order
from saga_log.ops.client import SagaWatcher
from saga_log.recorder import main as recorder_main
from saga_log.runtime import ServiceRuntime, tracing
from services.inventory import main as inventory_main
from services.order import main as order_main
from services.payment import main as payment_main
from tests.support import FAST_RETRIES, FIELD_KEYS, Broker, database_url, drop_databases, eventually

MAINS: dict[str, ModuleType] = {
    "order": order_main,
    "payment": payment_main,
    "inventory": inventory_main,
    "saga_log": recorder_main,
}


@pytest.fixture(scope="module")
async def spans(broker: Broker, pg_server_url: str) -> AsyncIterator[InMemorySpanExporter]:
    """The order saga's three services and the history, each on its own database, all
    exporting their spans to one in-memory exporter (demo faults on)."""
    exporter = InMemorySpanExporter()
    suffix = uuid.uuid4().hex[:8]
    names = {service: f"test_trace_{service}_{suffix}" for service in MAINS}
    runtimes: list[ServiceRuntime] = []
    try:
        for service, main in MAINS.items():
            settings = main.SERVICE.settings(
                database_url=database_url(pg_server_url, names[service]),
                amqp_url=broker.url(service),
                broker_user_prefix=broker.prefix,
                faults="seed",
                field_keys=FIELD_KEYS,
                **{key.removeprefix("SAGA_").lower(): value for key, value in FAST_RETRIES.items()},
            )
            runtime = main.build(settings)
            runtime.span_exporter = exporter
            await runtime.start()
            runtimes.append(runtime)
        yield exporter
    finally:
        for runtime in reversed(runtimes):
            await runtime.stop()
        await drop_databases(pg_server_url, list(names.values()))


def attribute(span: ReadableSpan, name: str) -> Any:
    return (span.attributes or {}).get(name)


def consumers_of(routing_key: str) -> set[str]:
    """The queues of the running services that receive `routing_key`."""
    return {
        c.queue
        for c in CONSUMERS
        if c.service in MAINS and any(key in ("#", routing_key) for key in c.routing_keys)
    }


class Trace:
    """The finished spans of one saga's trace."""

    def __init__(self, spans: Sequence[ReadableSpan], trace_id: int) -> None:
        self.spans = [s for s in spans if s.context is not None and s.context.trace_id == trace_id]
        self.by_id = {s.context.span_id: s for s in self.spans if s.context is not None}

    def parent(self, span: ReadableSpan) -> ReadableSpan | None:
        return self.by_id.get(span.parent.span_id) if span.parent is not None else None

    def steps(self, span: ReadableSpan) -> list[str]:
        """The names of `span`'s own steps (its internal children: not the next hop's)."""
        assert span.context is not None
        own = span.context.span_id
        return sorted(
            s.name
            for s in self.spans
            if s.parent and s.parent.span_id == own and s.kind == SpanKind.INTERNAL
        )

    def named(self, name: str, message_id: str | None = None) -> list[ReadableSpan]:
        return [
            s
            for s in self.spans
            if s.name == name
            and (message_id is None or attribute(s, "messaging.message.id") == message_id)
        ]


def expected_spans(events: list[dict[str, Any]], order_id: str, found: Trace) -> list[str]:
    """What the trace still lacks for `events` (empty: complete)."""
    missing = []
    for event in events:
        routing_key = event["routing_key"]
        if event["type"] != "PlaceOrder" and not found.named(
            f"{routing_key} publish", event["message_id"]
        ):
            missing.append(f"{routing_key} publish")
        for queue in consumers_of(routing_key):
            processes = [
                s
                for s in found.named(f"{queue} process")
                if attribute(s, "saga.id") == order_id
                and attribute(s, "saga.message.type") == event["type"]
            ]
            if not processes or any(s.end_time is None for s in processes):
                missing.append(f"{queue} process of {event['type']}")
    return missing


@pytest.mark.parametrize("scenario", ["ok", "3"])
async def test_each_saga_is_one_trace_with_every_step_and_its_parents(
    spans: InMemorySpanExporter, broker: Broker, scenario: str
) -> None:
    order_id = fresh_order_id(scenario)
    async with SagaWatcher(broker.url("client")) as watcher:
        await watcher.place(sample_order(scenario, order_id=order_id))
        events = await watcher.wait(order_id)
    # The client sent no context: the trace is the saga's derived one, in every service.
    trace_id = tracing.saga_trace_id("order", order_id)

    async def complete() -> Trace | None:
        found = Trace(spans.get_finished_spans(), trace_id)
        return None if expected_spans(events, order_id, found) else found

    found = await eventually(complete)
    # One trace per saga: every span that names this saga is in it, and only this saga's.
    assert {
        s.context.trace_id
        for s in spans.get_finished_spans()
        if attribute(s, "saga.id") == order_id and s.context is not None
    } == {trace_id}
    assert {attribute(s, "saga.id") for s in found.spans} <= {order_id, None}

    for event in events:
        routing_key, kind = event["routing_key"], event["type"]
        publish: ReadableSpan | None = None
        if kind != "PlaceOrder":
            (publish,) = found.named(f"{routing_key} publish", event["message_id"])
            assert found.steps(publish) == ["confirm", "outbox wait"]
            # Its parent: the delivery, in the producing service, of the message that
            # caused it (the context its outbox row kept).
            cause = found.parent(publish)
            assert cause is not None, f"{kind}: publish without its cause"
            assert cause.name.startswith(f"{event['producer']}.")
            assert cause.name.endswith(" process")
            if not event["causation_id"].startswith("PlaceOrder:"):
                assert attribute(cause, "messaging.message.id") == event["causation_id"]
        for queue in consumers_of(routing_key):
            for process in found.named(f"{queue} process"):
                if attribute(process, "saga.message.type") != kind:
                    continue
                # Each consumer's delivery is the child of the publish it received (the
                # saga's start is the root, in the order service and the history alike).
                if publish is None:
                    assert process.parent is None, f"{queue} process of {kind}"
                else:
                    assert found.parent(process) is publish, f"{queue} process of {kind}"
                assert found.steps(process) == ["commit", "handle", "receive"]
