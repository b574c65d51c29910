"""Tracing through the outbox (OpenTelemetry): one saga is one trace across all its services.

Off by default, and then free: every hook on the message path calls a null object
(`NO_TRACER`, `NO_TRACE`, `NO_PUBLISH`) that does nothing and allocates nothing; no span is
made, not even a no-op one. On, per process, when the standard variables ask for an
exporter: `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (OTLP over
HTTP, batched), `OTEL_TRACES_EXPORTER=otlp` and/or `console`, or `SAGA_TRACE_FILE` (one
JSON object per finished span per line, for the benchmark's per-hop breakdown).
`OTEL_SDK_DISABLED=true` wins over all of them. The resource's `service.name` is the
service's own unless `OTEL_SERVICE_NAME` (or `OTEL_RESOURCE_ATTRIBUTES`) names it; the
sampler, batch and exporter settings are the SDK's own `OTEL_*` variables.

The context travels with the data. A unit of work writes, in each outbox row's headers,
the W3C `traceparent` (and `tracestate`) of the delivery that caused the event: the context
is as durable as the event. The relay's publish span is that delivery's child, and the
message leaves with the publish span's own context in its AMQP headers; the consumer's
process span is the publish span's child. A message with no context (a command a client
typed, an event published with tracing off) starts a trace whose id is derived from its
saga's type and id (`saga_trace_id`), so every service that sees the start of a saga,
the history included, joins the same trace without being told.

Spans (names are stable: dashboards and the benchmark read them):

    <queue> process           CONSUMER: one delivery, from its arrival to its ack
      receive                 decode and the producer check (trust)
      handle                  the transaction up to its commit: inbox claim, locks, handler
      commit                  the commit (its fsync); in a batch (group commit) every
                              message's handle and commit cover the shared transaction,
                              with messaging.batch.message_count
    <routing_key> publish     PRODUCER: one outbox row relayed, from its commit to the
                              broker's confirm; parent: the context its row stores
      outbox wait             commit to the start of the publish
      confirm                 the publish to RabbitMQ's publisher confirm

Trust: a message's `traceparent` is a correlation hint and nothing else. The propagator
keeps it only if it is well formed (bounded, hexadecimal, not all zeros); it steers no
routing, retry, inbox key or producer check, and a header that is not text is ignored.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Final, ParamSpec, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from contracts import SAGA_OF_TYPE, derived_id

log = logging.getLogger(__name__)

#: True once any service of this process traces; the unit of work's only check.
ON = False

TRACE_FILE_VARIABLE = "SAGA_TRACE_FILE"
EXPORTERS = ("otlp", "console")
_PROPAGATOR: Final = TraceContextTextMapPropagator()
_EMPTY: Final[Mapping[str, str]] = {}


# --- turning it on ---------------------------------------------------------------------


def exporters_from(environ: Mapping[str, str]) -> tuple[str, ...]:
    """What the environment asks spans to be exported to: `otlp`, `console`, `file`; none
    means tracing is off. See the module docstring for the rules."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    named = [
        name.strip().lower()
        for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",")
        if name.strip()
    ]
    endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    if not named and endpoint:
        named = ["otlp"]
    unknown = sorted(set(named) - {*EXPORTERS, "none"})
    if unknown:
        log.warning("unsupported trace exporters ignored", extra={"exporters": unknown})
    chosen = [name for name in EXPORTERS if name in named]
    if environ.get(TRACE_FILE_VARIABLE):
        chosen.append("file")
    return tuple(chosen)


def start(
    service: str,
    *,
    environ: Mapping[str, str] | None = None,
    exporter: SpanExporter | None = None,
) -> Tracer:
    """The tracer of `service`: `NO_TRACER` unless the environment turns tracing on or
    `exporter` is given (a test's in-memory exporter: each span goes to it as it ends).
    Each service gets a provider of its own (its own `service.name`), never the global
    one, so that several services in one process (the tests) keep their names."""
    global ON
    environ = os.environ if environ is None else environ
    chosen = exporters_from(environ)
    if not chosen and exporter is None:
        return NO_TRACER
    named = "OTEL_SERVICE_NAME" in environ or "service.name=" in environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    resource = Resource.create({} if named else {"service.name": service})
    provider = TracerProvider(resource=resource, id_generator=_SagaIds(), shutdown_on_exit=False)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    for name in chosen:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, environ)))
    ON = True
    log.info("tracing on", extra={"service": service, "exporters": list(chosen)})
    return _Tracer(provider)


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    if name == "file":
        return JsonLinesExporter(environ[TRACE_FILE_VARIABLE])
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    # Imported only when asked for: it brings requests and protobuf along.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # It reads the OTEL_EXPORTER_OTLP_* variables itself, but takes one set empty (as
    # docker-compose.yml passes them when unset) for an endpoint: give it the default.
    endpoints = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    if any(environ.get(name) for name in endpoints):
        return OTLPSpanExporter()
    return OTLPSpanExporter(endpoint="http://localhost:4318/v1/traces")


class JsonLinesExporter(SpanExporter):
    """Appends one JSON object per finished span to a file (`SAGA_TRACE_FILE`): name,
    trace_id, span_id, parent_id, service, kind, start and end (ns since the epoch),
    status and attributes. Behind a batch processor; flushed when the service stops."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed at shutdown)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(span)) + "\n" for span in spans)
        with self._lock:
            if self._file.closed:
                return SpanExportResult.FAILURE
            self._file.write(lines)
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # every export is written through


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """A finished span as `JsonLinesExporter` writes it."""
    context, parent = span.context, span.parent
    return {
        "name": span.name,
        "trace_id": trace.format_trace_id(context.trace_id) if context else None,
        "span_id": trace.format_span_id(context.span_id) if context else None,
        "parent_id": trace.format_span_id(parent.span_id) if parent else None,
        "service": span.resource.attributes.get("service.name"),
        "kind": span.kind.name,
        "start": span.start_time,
        "end": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
    }


# --- deriving a saga's trace -------------------------------------------------------------

#: Set around the start of a root span: the trace id that span must have.
_SAGA_TRACE: contextvars.ContextVar[int | None] = contextvars.ContextVar("saga_trace", default=None)


class _SagaIds(RandomIdGenerator):
    """Random ids, but a root span started for a saga gets the saga's own trace id."""

    def generate_trace_id(self) -> int:
        return _SAGA_TRACE.get() or super().generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return _SAGA_TRACE.get() is None


def saga_trace_id(saga_type: str, saga_id: str) -> int:
    """The trace id of a saga started by a message without context: the same in every
    service that sees the saga's start (a UUIDv5 of the saga, as the project's other
    derived ids)."""
    return derived_id("trace", saga_type, saga_id).int


def saga_of(message: Any) -> tuple[str, str] | None:
    """(saga type, saga id) of a decoded message, if it names them."""
    saga_id = getattr(message, "saga_id", None)
    kind = getattr(message, "type", None)
    if not isinstance(kind, str):
        kind = getattr(type(message), "type_name", lambda: None)()
    saga_type = getattr(message, "saga_type", None)
    if not isinstance(saga_type, str):
        saga = SAGA_OF_TYPE.get(kind) if isinstance(kind, str) else None
        saga_type = saga.name if saga is not None else None
    if isinstance(saga_type, str) and isinstance(saga_id, str):
        return saga_type, saga_id
    return None


# --- propagation ---------------------------------------------------------------------------


class _HeaderGetter(Getter[Mapping[str, Any]]):
    """AMQP headers (or an outbox row's) as the propagator reads them: text values only;
    a client's bytes are decoded leniently, anything else is not a context."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [str(key) for key in carrier]


_GETTER: Final = _HeaderGetter()


def extract(headers: Mapping[str, Any] | None) -> Context | None:
    """The valid W3C context `headers` carry, or None (absent or malformed: ignored)."""
    if not headers or "traceparent" not in headers:
        return None
    context = _PROPAGATOR.extract(headers, getter=_GETTER)
    valid = trace.get_current_span(context).get_span_context().is_valid
    return context if valid else None


def inject(span: trace.Span, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """`headers` (a new dict if None) with `span`'s W3C context in place of any other."""
    carrier = {} if headers is None else headers
    carrier.pop("traceparent", None)
    carrier.pop("tracestate", None)
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def current_carrier() -> Mapping[str, str]:
    """The W3C context of the current span (a unit of work used outside a delivery, inside
    a span of the caller's), for an outbox row; empty when tracing is off or none is."""
    if not ON:
        return _EMPTY
    span = trace.get_current_span()
    return inject(span) if span.get_span_context().is_valid else _EMPTY


# --- the hooks: null objects first, then the real ones -----------------------------------


class MessageTrace:
    """The spans of one delivery. This base does nothing: it is what a delivery holds when
    tracing is off (`NO_TRACE`)."""

    __slots__ = ()

    #: The W3C context of the delivery's process span: what the events it causes carry.
    carrier: Mapping[str, str] = _EMPTY

    def read(self, message: Any) -> None:
        """The message is decoded and checked (None: it is not valid)."""

    def transaction(self, began: int, handled: int, committed: int, size: int) -> None:
        """Its transaction (shared with `size - 1` others) committed; times in ns."""

    def failed(self, error: BaseException) -> None:
        """It was not handled: retried, parked or dead-lettered, for `error`."""

    def end(self) -> None:
        """It is settled (acked, or left to the broker)."""


class PublishTrace:
    """The spans of one outbox row's publish, as a context manager around it. This base
    does nothing (`NO_PUBLISH`)."""

    __slots__ = ()

    def __enter__(self) -> PublishTrace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def headers(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """The AMQP headers for the row whose headers are `stored`."""
        return dict(stored)


class Tracer:
    """A service's tracing. This base is tracing off (`NO_TRACER`)."""

    __slots__ = ()

    on = False

    def arrived(self, raw: Any, queue: str) -> MessageTrace:
        """A delivery `raw` arrived on `queue`."""
        return NO_TRACE

    def publishing(self, row: Any) -> PublishTrace:
        """The relay starts publishing the outbox row `row`."""
        return NO_PUBLISH

    def shutdown(self) -> None:
        """Export what is buffered, then stop (the service stops)."""


NO_TRACE: Final = MessageTrace()
NO_PUBLISH: Final = PublishTrace()
NO_TRACER: Final = Tracer()


P = ParamSpec("P")
R = TypeVar("R")


def _quietly(hook: Callable[P, R]) -> Callable[P, R | None]:
    """A tracing hook that cannot fail the message it traces: a span lost is logged."""

    @functools.wraps(hook)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R | None:
        try:
            return hook(*args, **kwargs)
        except Exception:
            log.warning("tracing failed; the message goes on untraced", exc_info=True)
            return None

    return guarded


class _Tracer(Tracer):
    __slots__ = ("_provider", "tracer")

    on = True

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self.tracer = provider.get_tracer("saga_log.runtime")

    def arrived(self, raw: Any, queue: str) -> MessageTrace:
        return _Delivery(self.tracer, raw, queue)

    def publishing(self, row: Any) -> PublishTrace:
        return _quietly(_Publish)(self.tracer, row) or NO_PUBLISH

    def shutdown(self) -> None:
        self._provider.shutdown()


def _root(tracer: trace.Tracer, name: str, parent: Context | None, saga: Any, **span: Any) -> Any:
    """Start `name` under `parent`, or as the root of its saga's derived trace."""
    if parent is not None or saga is None:
        return tracer.start_span(name, context=parent or Context(), **span)
    token = _SAGA_TRACE.set(saga_trace_id(*saga))
    try:
        return tracer.start_span(name, context=Context(), **span)
    finally:
        _SAGA_TRACE.reset(token)


class _Delivery(MessageTrace):
    __slots__ = ("_arrived", "_queue", "_raw", "_span", "_tracer", "carrier")

    def __init__(self, tracer: trace.Tracer, raw: Any, queue: str) -> None:
        self._arrived = time.time_ns()
        self._tracer = tracer
        self._raw = raw
        self._queue = queue
        self._span: trace.Span | None = None
        self.carrier = _EMPTY

    @_quietly
    def read(self, message: Any) -> None:
        raw, saga = self._raw, saga_of(message) if message is not None else None
        attributes: dict[str, Any] = {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": getattr(raw, "exchange", None) or "",
            "messaging.destination.subscription.name": self._queue,
            "messaging.rabbitmq.destination.routing_key": raw.routing_key or "",
            "messaging.message.id": raw.message_id or "",
        }
        if saga is not None:
            attributes |= {
                "saga.type": saga[0],
                "saga.id": saga[1],
                "messaging.message.conversation_id": saga[1],
            }
        if message is not None:
            attributes["saga.message.type"] = getattr(message, "type", type(message).__name__)
        span = _root(
            self._tracer,
            f"{self._queue} process",
            extract(raw.headers),
            saga,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            start_time=self._arrived,
        )
        self._span = span
        self.carrier = inject(span)
        receive = self._tracer.start_span(
            "receive", context=trace.set_span_in_context(span), start_time=self._arrived
        )
        if message is None:
            receive.set_status(Status(StatusCode.ERROR, "not a valid message"))
        receive.end()

    @_quietly
    def transaction(self, began: int, handled: int, committed: int, size: int) -> None:
        span = self._span
        if span is None:
            return
        span.set_attribute("messaging.batch.message_count", size)
        parent = trace.set_span_in_context(span)
        self._tracer.start_span("handle", context=parent, start_time=began).end(handled)
        self._tracer.start_span("commit", context=parent, start_time=handled).end(committed)

    @_quietly
    def failed(self, error: BaseException) -> None:
        if self._span is not None:
            self._span.record_exception(error)
            self._span.set_status(Status(StatusCode.ERROR, type(error).__name__))

    @_quietly
    def end(self) -> None:
        if self._span is not None:
            self._span.end()
            self._span = None


class _Publish(PublishTrace):
    __slots__ = ("_context", "_span", "_started", "_tracer")

    def __init__(self, tracer: trace.Tracer, row: Any) -> None:
        self._started = time.time_ns()
        self._tracer = tracer
        headers = row.headers or {}
        saga_type = SAGA_OF_TYPE.get(row.message_type)
        saga = (saga_type.name, row.correlation_id) if saga_type is not None else None
        committed = getattr(row, "committed_ns", 0) or _ns(row.created_at) or self._started
        waited_from = min(committed, self._started)
        self._span = _root(
            tracer,
            f"{row.routing_key} publish",
            extract(headers),
            saga,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "send",
                "messaging.operation.name": "publish",
                "messaging.destination.name": row.exchange,
                "messaging.rabbitmq.destination.routing_key": row.routing_key,
                "messaging.message.id": str(row.message_id),
                "messaging.message.conversation_id": row.correlation_id,
                "saga.id": row.correlation_id,
                "saga.type": saga[0] if saga is not None else "",
                "saga.message.type": row.message_type,
            },
            start_time=waited_from,
        )
        self._context = trace.set_span_in_context(self._span)
        tracer.start_span("outbox wait", context=self._context, start_time=waited_from).end(
            self._started
        )

    def headers(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        # The row keeps its cause's context (durable); the message carries the publish's.
        return _quietly(inject)(self._span, dict(stored)) or dict(stored)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _quietly(self._confirmed)(exc)

    def _confirmed(self, exc: BaseException | None) -> None:
        confirmed = time.time_ns()
        confirm = self._tracer.start_span(
            "confirm", context=self._context, start_time=self._started
        )
        if exc is not None:
            for span in (confirm, self._span):
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        confirm.end(confirmed)
        self._span.end(confirmed)


def _ns(moment: datetime | None) -> int:
    return int(moment.timestamp() * 1e9) if isinstance(moment, datetime) else 0
