"""Tracing through the outbox, in memory: off by default and then free, turned on by the
standard variables, one trace per saga (derived when a message carries no context), the
context carried from a delivery through its outbox row to the next consumer, and a
hostile `traceparent` ignored."""

from __future__ import annotations

import asyncio
import json
import os
import timeit
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts import OrderCreated, PlaceOrder, SagaMessage, consumer, decode, encode
from contracts.samples import sample_order
from saga_log.runtime import (
    DeliveryHandler,
    Received,
    RetryPolicy,
    Subscription,
    tracing,
)
from saga_log.runtime.outbox import OutboxRow
from tests.unit.fakes import FakeDatabase, FakeUnitOfWork
from tests.unit.test_batching import PAYMENT, FakeBroker, FakeRaw, order_created

VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def tracer(service: str = "order") -> tuple[tracing.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return tracing.start(service, environ={}, exporter=exporter), exporter


def by_name(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def placed(order_id: str = "47063fe3-56d9-4c51-b91f-71929834ce03") -> bytes:
    return json.dumps(sample_order("ok", order_id=order_id)).encode()


# --- off by default -----------------------------------------------------------------------


def test_tracing_is_off_by_default_and_its_hooks_are_shared_null_objects() -> None:
    off = tracing.start("order", environ={})
    assert off is tracing.NO_TRACER and not off.on
    raw = FakeRaw(placed())
    assert off.arrived(raw, "order.process_order") is tracing.NO_TRACE
    assert tracing.NO_TRACE.carrier == {}
    headers = {"causation_id": "c"}
    with off.publishing(object()) as publish:
        sent = publish.headers(headers)
    assert publish is tracing.NO_PUBLISH
    assert sent == headers and sent is not headers


def test_tracing_off_costs_a_few_calls_per_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "ON", False)
    off, raw, context = tracing.NO_TRACER, FakeRaw(placed()), dict[str, Any]()

    def hooks() -> None:  # every hook one delivery passes, as delivery.py calls them
        delivery = off.arrived(raw, "order.process_order")
        delivery.read(None)
        context.get("cause", tracing.current_carrier())
        delivery.end()

    # Measured about 0.4 µs here (a delivery is hundreds); the bound only catches a hook
    # that starts doing real work when off.
    best = min(timeit.repeat(hooks, number=10_000, repeat=5)) / 10_000
    assert best < 5e-6


@pytest.mark.parametrize(
    ("environ", "exporters"),
    [
        ({}, ()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "console"}, ("console",)),
        ({"OTEL_TRACES_EXPORTER": "Console, otlp"}, ("otlp", "console")),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, ()),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, ()),
        ({"SAGA_TRACE_FILE": "/tmp/spans.jsonl"}, ("file",)),
        ({"OTEL_TRACES_EXPORTER": "console", "SAGA_TRACE_FILE": "/tmp/s"}, ("console", "file")),
        (
            {
                "OTEL_SDK_DISABLED": "TRUE",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x",
                "SAGA_TRACE_FILE": "/tmp/s",
            },
            (),
        ),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, ("otlp",)),
    ],
)
def test_the_standard_variables_turn_tracing_on(
    environ: dict[str, str], exporters: tuple[str, ...]
) -> None:
    assert tracing.exporters_from(environ) == exporters


def test_the_trace_file_has_a_line_per_span_named_after_the_service(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    on = tracing.start("order", environ={"SAGA_TRACE_FILE": str(path)})
    delivery = on.arrived(FakeRaw(placed()), "order.process_order")
    delivery.read(decode(PlaceOrder, placed()))
    delivery.end()
    on.shutdown()  # flushes the batch
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert {line["name"] for line in lines} == {"order.process_order process", "receive"}
    assert {line["service"] for line in lines} == {"order"}
    process = next(line for line in lines if line["kind"] == "CONSUMER")
    assert process["parent_id"] is None and process["end"] >= process["start"] > 0
    assert process["attributes"]["saga.type"] == "order"


def test_otel_service_name_names_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop-orders")
    path = tmp_path / "spans.jsonl"
    on = tracing.start("order", environ={**os.environ, "SAGA_TRACE_FILE": str(path)})
    delivery = on.arrived(FakeRaw(placed()), "order.process_order")
    delivery.read(None)
    delivery.end()
    on.shutdown()
    assert {json.loads(line)["service"] for line in path.read_text().splitlines()} == {
        "shop-orders"
    }


# --- one trace per saga -------------------------------------------------------------------


def test_a_saga_started_without_context_has_the_same_trace_in_every_service() -> None:
    order, order_spans = tracer("order")
    history, history_spans = tracer("saga_log")
    for on, message, queue in (
        (order, decode(PlaceOrder, placed()), "order.process_order"),
        (history, decode(SagaMessage, placed()), "saga_log.record"),
    ):
        delivery = on.arrived(FakeRaw(placed()), queue)
        delivery.read(message)
        delivery.end()
    expected = tracing.saga_trace_id("order", "47063fe3-56d9-4c51-b91f-71929834ce03")
    for spans in (order_spans.get_finished_spans(), history_spans.get_finished_spans()):
        (process,) = [span for span in spans if span.kind == trace.SpanKind.CONSUMER]
        assert process.parent is None  # the saga's root, not the child of a made-up span
        assert process.context is not None and process.context.trace_id == expected
    assert tracing.saga_trace_id("order", "another") != expected
    assert tracing.saga_trace_id("fare", "47063fe3-56d9-4c51-b91f-71929834ce03") != expected


def test_the_context_travels_through_the_outbox_row_to_the_next_consumer() -> None:
    order, order_spans = tracer("order")
    payment, payment_spans = tracer("payment")
    command = decode(PlaceOrder, placed())
    delivery = order.arrived(FakeRaw(placed()), "order.process_order")
    delivery.read(command)
    # What the unit of work writes: the event's row carries its cause's context.
    event = OrderCreated.caused_by(
        command.inbox_key(),
        producer="order",
        order_id=command.order_id,
        order_date=command.order_date,
        customer_id=command.customer_id,
        items=command.items,
    )
    row = OutboxRow(
        message_id=event.message_id,
        exchange="saga.events",
        routing_key="order.created",
        message_type=event.type,
        correlation_id=event.correlation_id,
        headers={"causation_id": event.causation_id, **delivery.carrier},
        body=encode(event),
        created_at=event.occurred_at,
        committed_ns=1,  # long ago: the outbox wait starts there
    )
    delivery.transaction(10, 20, 30, 1)
    delivery.end()
    with order.publishing(row) as publish:
        sent = publish.headers(row.headers)
    assert sent["traceparent"] != row.headers["traceparent"]  # the publish span's own
    assert row.headers["traceparent"] == delivery.carrier["traceparent"]  # row untouched
    received = payment.arrived(FakeRaw(encode(event), headers=sent), "payment.debit_payment")
    received.read(event)
    received.end()

    spans = order_spans.get_finished_spans()
    (process,) = by_name(spans, "order.process_order process")
    (publish_span,) = by_name(spans, "order.created publish")
    assert process.context is not None and publish_span.context is not None
    assert parent_id(publish_span) == process.context.span_id
    assert publish_span.kind == trace.SpanKind.PRODUCER
    for child in ("receive", "handle", "commit"):
        assert parent_id(by_name(spans, child)[0]) == process.context.span_id
    (wait,) = by_name(spans, "outbox wait")
    (confirm,) = by_name(spans, "confirm")
    assert parent_id(wait) == parent_id(confirm) == publish_span.context.span_id
    assert wait.start_time == 1 and wait.end_time == confirm.start_time
    (next_process,) = by_name(payment_spans.get_finished_spans(), "payment.debit_payment process")
    assert parent_id(next_process) == publish_span.context.span_id
    assert next_process.context is not None
    trace_ids = {process.context.trace_id, publish_span.context.trace_id}
    assert trace_ids == {next_process.context.trace_id}
    assert publish_span.attributes is not None
    assert publish_span.attributes["messaging.destination.name"] == "saga.events"
    assert publish_span.attributes["saga.id"] == command.order_id


def test_extract_reads_back_what_inject_wrote() -> None:
    on, _ = tracer()
    delivery = on.arrived(FakeRaw(placed()), "order.process_order")
    delivery.read(decode(PlaceOrder, placed()))
    carrier = dict(delivery.carrier)
    context = tracing.extract(carrier)
    assert context is not None
    extracted = trace.get_current_span(context).get_span_context()
    assert f"{extracted.span_id:016x}" in carrier["traceparent"]
    # AMQP may hand text headers over as bytes.
    assert tracing.extract({"traceparent": carrier["traceparent"].encode()}) is not None
    delivery.end()


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # no trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # no span id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # a forbidden version
        "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",  # upper case
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        VALID + " " * 600,  # too long
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01",
        b"\xff\xfe\x00",
        12345,
        {"nested": VALID},
        ["00", VALID],
        None,
    ],
)
def test_a_hostile_traceparent_is_ignored(value: Any) -> None:
    assert tracing.extract({"traceparent": value, "tracestate": "x=" + "y" * 1000}) is None
    on, spans = tracer()
    delivery = on.arrived(FakeRaw(placed(), headers={"traceparent": value}), "order.process")
    delivery.read(decode(PlaceOrder, placed()))
    delivery.end()
    (process,) = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.CONSUMER]
    assert process.parent is None and process.context is not None
    assert process.context.trace_id == tracing.saga_trace_id(
        "order", "47063fe3-56d9-4c51-b91f-71929834ce03"
    )


def test_an_oversized_tracestate_is_dropped_but_the_traceparent_kept() -> None:
    context = tracing.extract({"traceparent": VALID, "tracestate": "k=" + "v" * 1000})
    assert context is not None
    span_context = trace.get_current_span(context).get_span_context()
    assert f"{span_context.trace_id:032x}" == VALID.split("-")[1]
    assert not span_context.trace_state


# --- through the delivery path ------------------------------------------------------------


def traced_delivery(
    on: tracing.Tracer, *, batch_size: int = 50
) -> tuple[DeliveryHandler, FakeDatabase, dict[str, Any]]:
    db, seen = FakeDatabase(), dict[str, Any]()

    async def handler(uow: Any, batch: Sequence[Received[Any]]) -> None:
        for received in batch:
            seen[received.saga_id] = uow.trace_context.get(received.message_id)

    delivery = DeliveryHandler(
        Subscription(consumer("payment", "debit_payment"), handler),
        broker=FakeBroker(),  # type: ignore[arg-type]
        unit_of_work=lambda: FakeUnitOfWork(db),  # type: ignore[arg-type,return-value]
        retry_policy=RetryPolicy(),
        service="payment",
        trust=PAYMENT,
        batch_size=batch_size,
        tracer=on,
    )
    return delivery, db, seen


async def test_each_message_of_a_batch_gets_its_own_spans_and_its_events_its_context() -> None:
    on, exporter = tracer("payment")
    delivery, db, seen = traced_delivery(on)
    raws = [FakeRaw(order_created(f"order-{i:02}")) for i in range(12)]
    await asyncio.gather(*(delivery.handle(raw) for raw in raws))
    assert len(db.transactions) < 12  # batched
    spans = exporter.get_finished_spans()
    processes = by_name(spans, "payment.debit_payment process")
    assert len(processes) == 12
    for process in processes:
        assert process.context is not None and process.attributes is not None
        children = {s.name for s in spans if parent_id(s) == process.context.span_id}
        assert children == {"receive", "handle", "commit"}
        saga_id = process.attributes["saga.id"]
        traceparent = seen[saga_id]["traceparent"]
        assert traceparent.split("-")[2] == f"{process.context.span_id:016x}"
    sizes = {p.attributes["messaging.batch.message_count"] for p in processes if p.attributes}
    assert max(sizes) > 1  # type: ignore[type-var]


async def test_a_hostile_traceparent_changes_nothing_but_the_trace() -> None:
    on, exporter = tracer("payment")
    delivery, _, seen = traced_delivery(on, batch_size=1)
    body = order_created("order-x")
    chosen = "00-" + "f" * 32 + "-" + "e" * 16 + "-01"
    for headers in ({}, {"traceparent": chosen, "tracestate": "a=b"}, {"traceparent": "x" * 600}):
        await delivery.handle(FakeRaw(body, headers=headers))
    # Handled once, under one inbox key: the header steered nothing...
    assert (delivery.stats.handled, delivery.stats.duplicates) == (1, 2)
    assert list(seen) == ["order-x"]
    # ... but which trace the delivery joins (a well-formed one is a correlation hint).
    processes = by_name(exporter.get_finished_spans(), "payment.debit_payment process")
    derived = tracing.saga_trace_id("order", "order-x")
    assert [p.context.trace_id for p in processes if p.context] == [derived, 2**128 - 1, derived]


def test_otlp_with_an_empty_endpoint_variable_exports_to_the_default_endpoint() -> None:
    # docker-compose.yml passes the variables through empty when they are unset.
    exporter = tracing._exporter("otlp", {"OTEL_EXPORTER_OTLP_ENDPOINT": ""})
    assert exporter._endpoint == "http://localhost:4318/v1/traces"  # type: ignore[attr-defined]
    exporter.shutdown()
