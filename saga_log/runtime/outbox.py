"""The outbox relay: publishes what handlers committed to the outbox.

Two paths, one guarantee. The fast path: a unit of work that committed outbox rows hands
them to the relay, which publishes them at once (persistent, confirmed, pipelined on one
channel) and stamps them `published_at` a moment later (up to 1 s, many rows in one
statement: the stamps of a quiet service would otherwise be a commit each); no read of
the outbox. The
poller: every `poll_interval` it claims rows still unstamped after `grace` seconds (left by
a crash between commit and publish, or by a broker outage, or written by another replica)
with `FOR UPDATE SKIP LOCKED`, so replicas relay side by side. A row is stamped only after
RabbitMQ confirmed it: a crash in between publishes it again with the same `message_id`,
which the consumers' inboxes absorb.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aio_pika
import aiormq
from aiormq.abc import DeliveredMessage
from faststream.rabbit import RabbitBroker, RabbitExchange
from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from saga_log.runtime import metrics
from saga_log.runtime.database import driver_of
from saga_log.runtime.fault_plan import FaultPlan
from saga_log.runtime.tracing import NO_TRACER, Tracer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboxRow:
    """One outbox row, as committed (fast path) or as read back (poller)."""

    message_id: Any
    exchange: str
    routing_key: str
    message_type: str
    correlation_id: str
    headers: Mapping[str, Any]
    body: bytes
    created_at: datetime | None = None
    #: When its transaction committed (time.time_ns), for the `outbox wait` span.
    committed_ns: int = 0

    @classmethod
    def of(cls, row: Mapping[str, Any], **extra: Any) -> OutboxRow:
        fields = {name: row[name] for name in cls.__dataclass_fields__ if name in row}
        return cls(**fields, **extra)


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        outbox: Table,
        broker: RabbitBroker,
        *,
        batch_size: int = 200,
        poll_interval: float = 1.0,
        publish_timeout: float = 10.0,
        retention: timedelta = timedelta(hours=1),
        service: str = "",
        user_id: str | None = None,
        fault_plan: FaultPlan | None = None,
        grace: float = 5.0,
        inbox: Table | None = None,
        inbox_retention: timedelta = timedelta(days=7),
        tracer: Tracer = NO_TRACER,
        mark_delay: float = 1.0,
    ) -> None:
        self._engine = engine
        self._outbox = outbox
        self._broker = broker
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._publish_timeout = publish_timeout
        self._retention = retention
        self._service = service
        # The broker refuses a user_id that is not the connection's user: consumers can
        # then tell who published each event.
        self._user_id = user_id
        self._exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
        self._published_metric = metrics.OUTBOX_PUBLISHED.labels(service)
        self._faults = fault_plan or FaultPlan()
        self._grace = timedelta(seconds=grace)
        self._inbox = inbox
        self._inbox_retention = inbox_retention
        self._tracer = tracer
        self._wakeup = asyncio.Event()
        # Bounded: past it (a broker outage), rows wait for the poller instead of memory.
        self._fresh: collections.deque[OutboxRow] = collections.deque(maxlen=50_000)
        self._last_prune = 0.0
        self._last_poll = 0.0
        self._mark_delay = mark_delay
        self._unmarked: list[Any] = []
        self._first_unmarked = 0.0
        self.published = 0

    def committed(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Called after a commit that wrote `rows` to the outbox: publish them now."""
        committed = time.time_ns() if self._tracer.on else 0  # only the spans read it
        self._fresh.extend(OutboxRow.of(row, committed_ns=committed) for row in rows)
        self._wakeup.set()

    async def run(self) -> None:
        """Relay until cancelled; errors are logged and retried after the poll interval."""
        while True:
            self._wakeup.clear()
            try:
                while self._fresh:
                    await self._relay_fresh()
                if self._unmarked and time.monotonic() - self._first_unmarked >= self._mark_delay:
                    await self.flush_marks()
                if time.monotonic() - self._last_poll >= self._poll_interval:
                    self._last_poll = time.monotonic()
                    if await self._anything_due():
                        while await self.relay_once(min_age=self._grace) == self._batch_size:
                            pass
                    await self._prune_if_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying after the poll interval")
            # A timer rather than wait_for, whose wrapping task cost a commit's events a
            # loop iteration or two before they left (the "outbox wait" of each hop).
            wait = self._poll_interval
            if self._unmarked:
                wait = min(wait, self._mark_delay)
            timer = asyncio.get_running_loop().call_later(wait, self._wakeup.set)
            try:
                await self._wakeup.wait()
            finally:
                timer.cancel()

    async def _relay_fresh(self) -> None:
        batch = [self._fresh.popleft() for _ in range(min(self._batch_size, len(self._fresh)))]
        results = await self._publish_all(batch)
        self._faults.crash_point("relay_after_publish")
        done = [
            row.message_id for row, result in zip(batch, results, strict=True) if result is None
        ]
        if done:
            if not self._unmarked:
                self._first_unmarked = time.monotonic()
            self._unmarked.extend(done)
            if len(self._unmarked) >= self._batch_size:
                await self.flush_marks()
        self._count(len(done))
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            # Left unstamped: the poller sends them once RabbitMQ is back.
            log.warning(
                "outbox messages not confirmed; the poller will retry them",
                extra={"failed": len(failures), "error": repr(failures[0])},
            )

    async def flush_marks(self) -> None:
        """Stamp what was confirmed since the last stamp, in one statement.

        Stamps wait up to `mark_delay` to share a statement: one per publish was a
        third of the database's commits per saga at low load. A stamp lost to a crash
        in the meantime only publishes its message again after the grace, which the
        inboxes absorb; the poller ignores rows younger than the grace."""
        done, self._unmarked = self._unmarked, []
        if not done:
            return
        try:
            async with self._engine.connect() as connection:
                # Straight on asyncpg, one statement in its own implicit transaction, where
                # SQLAlchemy's layer cost more than the round trip (see unit_of_work).
                driver = await driver_of(connection)
                await driver.execute(_mark_statement(self._outbox.name), done)
        except Exception as exc:
            # Unstamped, they are published again by the poller: duplicates, not losses.
            log.warning(
                "could not stamp published outbox rows; the poller will send them again",
                extra={"rows": len(done), "error": repr(exc)},
            )

    async def _publish_all(self, rows: Sequence[Any]) -> list[BaseException | None]:
        """Publish `rows`; for each, None or what went wrong."""
        if len(rows) == 1:
            # Alone (the usual case at low load): at once, without gather's task, which
            # put a loop turn between the commit and the wire.
            try:
                await self._publish(rows[0])
            except Exception as exc:
                return [exc]
            return [None]
        # One channel keeps publish order; confirms are awaited together (pipelined).
        return await asyncio.gather(*(self._publish(row) for row in rows), return_exceptions=True)

    def _count(self, published: int) -> None:
        self.published += published
        self._published_metric.inc(published)

    async def _anything_due(self) -> bool:
        """Is any row waiting for the poller? One indexed read outside a transaction: the
        poll runs every second of an idle service's life, and a claiming transaction
        through SQLAlchemy cost it ten times as much CPU."""
        async with self._engine.connect() as connection:
            driver = await driver_of(connection)
            return await driver.fetchval(_due_statement(self._outbox.name), self._grace) is not None

    async def relay_once(self, *, min_age: timedelta = timedelta(0)) -> int:
        """Publish one batch of rows unstamped for at least `min_age` (the poller); returns
        how many rows it claimed."""
        outbox = self._outbox
        async with self._engine.begin() as connection:
            rows = (
                await connection.execute(
                    select(outbox)
                    .where(
                        outbox.c.published_at.is_(None),
                        outbox.c.created_at <= func.now() - min_age,
                    )
                    .order_by(outbox.c.position)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            results = await self._publish_all(rows)
            self._faults.crash_point("relay_after_publish")
            done = [
                row.position for row, result in zip(rows, results, strict=True) if result is None
            ]
            if done:
                await connection.execute(
                    update(outbox)
                    .where(outbox.c.position.in_(done))
                    .values(published_at=func.now())
                )
        self._count(len(done))
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            raise RuntimeError(
                f"{len(failures)} of {len(rows)} outbox messages were not confirmed: "
                f"{failures[0]!r}"
            )
        return len(rows)

    async def _publish(self, row: Any) -> None:
        # Straight to aio-pika's exchange on the broker's (confirming, robust) channel:
        # faststream's publish path costs more per message than the relay's whole work.
        exchange = self._exchanges.get(row.exchange)
        if exchange is None:
            exchange = await self._broker.declare_exchange(
                RabbitExchange(row.exchange, declare=False)
            )
            self._exchanges[row.exchange] = exchange
        with self._tracer.publishing(row) as trace:
            confirmation = await exchange.publish(
                aio_pika.Message(
                    row.body,
                    headers=trace.headers(row.headers),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=str(row.message_id),
                    correlation_id=row.correlation_id,
                    type=row.message_type,
                    timestamp=row.created_at,
                    app_id=self._service,
                    user_id=self._user_id,
                ),
                routing_key=row.routing_key,
                mandatory=True,
                timeout=self._publish_timeout,
            )
        if isinstance(confirmation, DeliveredMessage):
            # No queue is bound for this routing key: the event is a fact nobody asked
            # for (every consumer's queue is declared before the relay starts).
            log.warning(
                "event not routed to any queue",
                extra={"routing_key": row.routing_key, "message_id": str(row.message_id)},
            )
            return
        if not isinstance(confirmation, aiormq.spec.Basic.Ack):
            raise RuntimeError(f"RabbitMQ refused {row.message_id}: {confirmation!r}")

    async def _prune_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < 60:
            return
        self._last_prune = now
        outbox = self._outbox
        # Retention keeps both tables flat over time: published rows are kept an hour for
        # whoever debugs, inbox keys a week (a redelivery older than that is not expected).
        async with self._engine.begin() as connection:
            await connection.execute(
                delete(outbox).where(outbox.c.published_at < func.now() - self._retention)
            )
            if self._inbox is not None:
                inbox = self._inbox
                await connection.execute(
                    delete(inbox).where(inbox.c.received_at < func.now() - self._inbox_retention)
                )

    async def oldest_unpublished_age(self) -> float:
        """Seconds since the oldest unpublished row was written (0 when none): the outbox lag."""
        outbox = self._outbox
        async with self._engine.connect() as connection:
            age = await connection.scalar(
                select(func.extract("epoch", func.now() - func.min(outbox.c.created_at))).where(
                    outbox.c.published_at.is_(None)
                )
            )
        return float(age or 0)


@functools.cache
def _mark_statement(outbox: str) -> str:
    return (
        f"UPDATE {outbox} SET published_at = now()"
        " WHERE message_id = ANY($1::uuid[]) AND published_at IS NULL"
    )


@functools.cache
def _due_statement(outbox: str) -> str:
    # The same predicate as relay_once's, so that the partial index on unpublished rows
    # answers it.
    return (
        f"SELECT 1 FROM {outbox} WHERE published_at IS NULL"
        " AND created_at <= now() - $1::interval LIMIT 1"
    )
