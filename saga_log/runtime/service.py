"""The composition every service shares: database, broker topology, subscribers, outbox
relay and an HTTP surface, built in the lifespan (nothing happens at import time).

A service names itself after its participant in the saga declarations: the queues it must
handle and the events it may publish follow from that name (`contracts.topology`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiormq
from faststream.middlewares import AckPolicy
from faststream.rabbit import (
    Channel,
    ExchangeType,
    QueueType,
    RabbitBroker,
    RabbitExchange,
    RabbitQueue,
)
from faststream.rabbit.annotations import RabbitMessage
from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import MetaData, Table, text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from contracts import CONSUMERS, EXCHANGE, Consumer, published_by
from contracts.topology import holding_exchange, queues_of, work_queue_arguments
from saga_log.runtime import logs, metrics, tracing
from saga_log.runtime.database import create_engine, ensure_database
from saga_log.runtime.delivery import DeliveryHandler
from saga_log.runtime.holding import Protection
from saga_log.runtime.http_guard import HttpGuard
from saga_log.runtime.migrations import upgrade
from saga_log.runtime.outbox import OutboxRelay
from saga_log.runtime.settings import RuntimeSettings
from saga_log.runtime.subscription import Subscription
from saga_log.runtime.trust import Trust
from saga_log.runtime.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

SAGA_EXCHANGE = RabbitExchange(EXCHANGE, type=ExchangeType.TOPIC, durable=True)


def work_queue(consumer: Consumer) -> RabbitQueue:
    return RabbitQueue(  # type: ignore[call-overload,no-any-return]
        consumer.queue,
        queue_type=QueueType.QUORUM,
        durable=True,
        arguments=work_queue_arguments(consumer),
    )


async def declare_topology(broker: RabbitBroker, service: str) -> None:
    """Declare `service`'s own part of the topology, idempotently: its holding exchange,
    its queues and their bindings. The exchange `saga.events`, the other services' queues
    and the notification queues come from the broker's definitions (`tools/broker.py`,
    loaded by `make up` and `make dev`): a service may not configure them."""
    try:
        exchange = await broker.declare_exchange(
            RabbitExchange(EXCHANGE, type=ExchangeType.TOPIC, declare=False)
        )
    except aiormq.exceptions.ChannelNotFoundEntity:
        raise RuntimeError(
            f"the exchange {EXCHANGE} does not exist on this broker: load the definitions "
            "the saga declarations make (make up and make dev do: tools/broker.py)"
        ) from None
    holding = await broker.declare_exchange(
        RabbitExchange(holding_exchange(service), type=ExchangeType.DIRECT, durable=True)
    )
    exchanges = {EXCHANGE: exchange, holding_exchange(service): holding}
    for consumer in (c for c in CONSUMERS if c.service == service):
        for spec in queues_of(consumer):
            queue = await broker.declare_queue(
                RabbitQueue(  # type: ignore[call-overload]
                    spec.name,
                    queue_type=QueueType(spec.arguments["x-queue-type"]),
                    durable=True,
                    arguments=spec.arguments,
                )
            )
            for source, routing_key in spec.bindings:
                await queue.bind(exchanges[source], routing_key=routing_key)


async def _undecoded(message: Any) -> Any:
    # Decoding is ours (contracts.decode), so that a body faststream cannot decode is
    # dead-lettered with a reason instead of failing before our code runs: the handler
    # gets faststream's message itself.
    return message


async def _patiently(what: str, attempt: Callable[[], Awaitable[Any]], timeout: float) -> None:
    """Run `attempt` until it succeeds: a service started before its database or broker
    (compose, a reboot, a broker restart) waits for them instead of exiting."""
    deadline = asyncio.get_running_loop().time() + timeout
    delay = 0.5
    while True:
        try:
            await attempt()
            return
        except (TimeoutError, OSError, ConnectionError) as exc:
            error: BaseException = exc
        except Exception as exc:  # asyncpg and aiormq wrap connection refusals their own way
            if "connect" not in repr(exc).lower() and "closed" not in repr(exc).lower():
                raise
            error = exc
        if asyncio.get_running_loop().time() + delay > deadline:
            raise RuntimeError(f"{what} still unreachable after {timeout:.0f} s: {error!r}")
        log.warning(
            "waiting for a dependency",
            extra={"dependency": what, "error": repr(error), "retry_in_s": delay},
        )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


def subscribe(broker: RabbitBroker, handler: DeliveryHandler, *, prefetch: int) -> None:
    """Register `handler` on its consumer's work queue; it settles every message itself."""
    consumer = handler.consumer

    async def on_message(message: RabbitMessage) -> None:
        # With apply_types=False (see build_broker) `message` is what _undecoded returned.
        await handler.handle(message.raw_message)

    broker.subscriber(
        work_queue(consumer),
        ack_policy=AckPolicy.MANUAL,
        decoder=_undecoded,
        channel=Channel(prefetch_count=prefetch),
        title=consumer.queue,
    )(on_message)


class ServiceRuntime:
    """Everything one service runs: see the module docstring.

    `routes` are the service's own HTTP routes; `/health` is added to them.
    """

    def __init__(
        self,
        *,
        name: str,
        settings: RuntimeSettings,
        metadata: MetaData,
        migrations: Path,
        subscriptions: Sequence[Subscription],
        routes: Sequence[BaseRoute] = (),
        background: Sequence[Callable[[ServiceRuntime], Coroutine[Any, Any, None]]] = (),
        custom_plans: bool = False,
    ) -> None:
        self.name = name
        self.custom_plans = custom_plans
        self.settings = settings
        self.metadata = metadata
        self.migrations = migrations
        self.subscriptions = tuple(subscriptions)
        self.routes = tuple(routes)
        self.background = tuple(background)
        self._tasks: list[asyncio.Task[None]] = []
        self.handlers: list[DeliveryHandler] = []
        self.outbox: Table = metadata.tables["outbox"]
        self.inbox: Table = metadata.tables["inbox"]
        self.publishes = published_by(name)
        self.trust = Trust(own=broker_user(settings.amqp_url), prefix=settings.broker_user_prefix)
        self._engine: AsyncEngine | None = None
        self._broker: RabbitBroker | None = None
        self._relay: OutboxRelay | None = None
        self._relay_engine: AsyncEngine | None = None
        self._relay_task: asyncio.Task[None] | None = None
        self.tracer: tracing.Tracer = tracing.NO_TRACER
        #: Where spans go whatever the environment says (a test's in-memory exporter).
        self.span_exporter: SpanExporter | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError(f"the {self.name} service has not started")
        return self._engine

    @property
    def broker(self) -> RabbitBroker:
        if self._broker is None:
            raise RuntimeError(f"the {self.name} service has not started")
        return self._broker

    def unit_of_work(self) -> UnitOfWork:
        """A unit of work that may publish what this service produces, and nothing else."""
        return UnitOfWork(
            self.engine,
            outbox=self.outbox,
            inbox=self.inbox,
            on_commit=self._wake_relay,
            may_publish=self.publishes,
        )

    def _wake_relay(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if self._relay is not None:
            self._relay.committed(rows)

    def build_broker(self) -> RabbitBroker:
        """The broker with every subscriber registered."""
        broker = RabbitBroker(
            self.settings.amqp_url,
            app_id=self.name,
            # No dependency injection per message: it resolved the message parameter in a
            # thread pool for every delivery (a quarter of the CPU of a handled message).
            apply_types=False,
            graceful_timeout=10.0,
            logger=logging.getLogger(f"faststream.{self.name}"),
        )
        for subscription in self.subscriptions:
            self._subscribe(broker, subscription)
        return broker

    def _subscribe(self, broker: RabbitBroker, subscription: Subscription) -> None:
        # Only where nothing downstream waits: a consumer that publishes no event, and
        # whose writes nobody reads the moment the saga moves on.
        waited_for = subscription.consumer.emits or subscription.prompt
        linger = 0.0 if waited_for else self.settings.linger
        prefetch = self.settings.prefetch
        if linger:
            # It lingers until a batch is full: with no more in hand than a batch, RabbitMQ
            # would send nothing while that batch commits (double buffering).
            prefetch = max(prefetch, 2 * self.settings.batch_size)
        handler = DeliveryHandler(
            subscription,
            broker=broker,
            unit_of_work=self.unit_of_work,
            retry_policy=self.settings.retry_policy(),
            retry_budget=self.settings.retry_budgets.get(subscription.consumer.queue),
            fault_plan=self.settings.injected_faults(),
            service=self.name,
            trust=self.trust,
            publish_timeout=self.settings.publish_timeout,
            batch_size=self.settings.batch_size,
            linger=linger,
            protect=Protection.of(subscription.consumer, self.settings.field_cipher_or_none()),
            tracer=self.tracer,
        )
        self.handlers.append(handler)
        subscribe(broker, handler, prefetch=prefetch)

    async def start(self) -> None:
        expected = f"{self.settings.broker_user_prefix}{self.name}"
        if self.trust.own != expected:
            raise RuntimeError(
                f"the {self.name} service must connect to RabbitMQ as its own user "
                f"{expected!r}, not {self.trust.own!r}: every consumer checks who published "
                "each event (README, Security). Set its AMQP URL "
                f"({self.name.upper()}_AMQP_URL) to that user's."
            )
        timeout = self.settings.startup_timeout
        url = self.settings.database_url
        owner_url = self.settings.migration_database_url or url
        await _patiently("PostgreSQL", lambda: ensure_database(owner_url), timeout)
        # The migrations run as the schema's owner, on an engine of their own; the service
        # then runs as a role that may only read and write rows (tools.database).
        migrator = create_engine(owner_url, pool_size=1)
        try:
            await _patiently("PostgreSQL", lambda: upgrade(migrator, self.migrations), timeout)
        finally:
            await migrator.dispose()
        self._engine = create_engine(url, custom_plans=self.custom_plans)
        await _warn_if_superuser(self._engine, self.name)
        self.handlers.clear()
        self.tracer = tracing.start(self.name, exporter=self.span_exporter)
        self._broker = self.build_broker()
        broker = self._broker
        await _patiently("RabbitMQ", broker.connect, timeout)
        await declare_topology(self._broker, self.name)
        # The relay's own engine: its stamps need no fsync (database.create_engine).
        self._relay_engine = create_engine(url, pool_size=2, flush_commits=False)
        self._relay = OutboxRelay(
            self._relay_engine,
            self.outbox,
            self._broker,
            batch_size=self.settings.outbox_batch_size,
            poll_interval=self.settings.outbox_poll_interval,
            publish_timeout=self.settings.publish_timeout,
            service=self.name,
            user_id=self.trust.own,
            fault_plan=self.settings.injected_faults(),
            retention=timedelta(seconds=self.settings.outbox_retention),
            inbox=self.inbox,
            inbox_retention=timedelta(seconds=self.settings.inbox_retention),
            tracer=self.tracer,
        )
        self._relay_task = asyncio.create_task(self._relay.run(), name=f"{self.name}-outbox-relay")
        await self._broker.start()
        self._tasks = [
            asyncio.create_task(job(self), name=f"{self.name}-{job.__name__}")
            for job in self.background
        ]
        log.info(
            "service started",
            extra={
                "service": self.name,
                "consumers": [s.consumer.queue for s in self.subscriptions],
            },
        )

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.stop()
        for task in [*self._tasks, self._relay_task]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._relay is not None:
            # What was confirmed but not yet stamped: else the next start sends it again.
            await self._relay.flush_marks()
        for engine in (self._engine, self._relay_engine):
            if engine is not None:
                await engine.dispose()
        # Last: what the stopping consumers and relay still recorded is exported too.
        self.tracer.shutdown()
        self.tracer = tracing.NO_TRACER
        log.info("service stopped", extra={"service": self.name})

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def asgi(self) -> Starlette:
        async def metrics_page(request: Request) -> Response:
            if self._relay is not None:
                try:
                    lag = await self._relay.oldest_unpublished_age()
                except Exception:  # the database is away: say so, keep serving the rest
                    log.warning("outbox lag unknown: database unreachable", exc_info=True)
                    lag = float("nan")
                metrics.OUTBOX_LAG.labels(self.name).set(lag)
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

        async def health(request: Request) -> JSONResponse:
            return JSONResponse(
                {
                    "service": self.name,
                    "status": "ok",
                    "consumers": {h.consumer.queue: h.stats.as_dict() for h in self.handlers},
                    "outbox_published": self._relay.published if self._relay else 0,
                }
            )

        routes = [*self.routes, Route("/health", health), Route("/metrics", metrics_page)]
        token = self.settings.http_token.get_secret_value()
        app = Starlette(
            routes=routes,
            lifespan=self.lifespan,
            middleware=[Middleware(HttpGuard, token=token)],
        )
        app.state.runtime = self
        return app


@dataclass(frozen=True)
class ServiceDefinition:
    """What makes one service: its name (its participant in the saga declarations), its
    schema, a handler for each of its declared queues, its HTTP routes and background jobs.
    Its `main.py` names one; `build`, `app` and `main` do the rest."""

    name: str
    module: str
    settings: type[RuntimeSettings]
    metadata: MetaData
    migrations: Path
    #: The subscriptions, made from the settings (demo faults, keys) when the service starts.
    subscriptions: Callable[[RuntimeSettings], Sequence[Subscription]]
    routes: Sequence[BaseRoute] = ()
    background: Sequence[Callable[[ServiceRuntime], Coroutine[Any, Any, None]]] = ()
    #: Plan every statement for its parameters (database.create_engine says when).
    custom_plans: bool = False

    def build(self, settings: RuntimeSettings | None = None) -> ServiceRuntime:
        settings = settings or self.settings()
        subscriptions = self.subscriptions(settings)
        check_subscriptions(self.name, subscriptions)
        return ServiceRuntime(
            name=self.name,
            settings=settings,
            metadata=self.metadata,
            migrations=self.migrations,
            subscriptions=subscriptions,
            routes=self.routes,
            background=self.background,
            custom_plans=self.custom_plans,
        )

    def app(self) -> Starlette:
        """The ASGI application (a uvicorn factory: built when the server starts)."""
        return self.build().asgi()

    def main(self) -> None:
        settings = self.settings()
        serve(f"{self.module}:app", settings)


async def _warn_if_superuser(engine: AsyncEngine, service: str) -> None:
    async with engine.connect() as connection:
        superuser = await connection.scalar(text("SELECT current_setting('is_superuser')"))
    if superuser == "on":
        log.warning(
            "connected to PostgreSQL as a superuser: give the service its runtime role, "
            "which may only read and write its own tables (README, Security)",
            extra={"service": service},
        )


def broker_user(amqp_url: str) -> str:
    """The user an AMQP URL connects as (`guest` when it names none, as RabbitMQ does)."""
    return unquote(urlsplit(amqp_url).username or "guest")


def check_subscriptions(service: str, subscriptions: Sequence[Subscription]) -> None:
    """A service handles exactly the queues the declarations give it, each once."""
    declared = {c.queue for c in CONSUMERS if c.service == service}
    handled = [s.consumer.queue for s in subscriptions]
    foreign = sorted(q for q in handled if q not in declared)
    missing = sorted(declared - set(handled))
    twice = sorted({q for q in handled if handled.count(q) > 1})
    problems = [
        *(f"{q} is not a queue of {service} in the saga declarations" for q in foreign),
        *(f"no handler for the declared queue {q}" for q in missing),
        *(f"{q} has two handlers" for q in twice),
    ]
    if problems:
        raise ValueError(
            f"the {service} service does not match its declaration: " + "; ".join(problems)
        )


def serve(app_factory: str, settings: RuntimeSettings) -> None:
    """Run a service's ASGI factory (`"pkg.module:app"`) under uvicorn until SIGTERM."""
    from saga_log.runtime.http_server import run

    logs.configure(settings.log_level)
    run(app_factory, host=settings.http_host, port=settings.http_port)


async def repeatedly(job: Callable[[], Awaitable[bool]], *, interval: float, what: str) -> None:
    """Run `job` every `interval` seconds until cancelled (a background job's loop); while
    it returns True (there is more to do) run it again at once. A failure is logged and the
    job tried again at the next interval."""
    while True:
        await asyncio.sleep(interval)
        try:
            while await job():
                pass
        except Exception:
            log.exception(f"{what} failed; trying again at the next interval")
