"""The outbox relay: publishes what handlers committed to the outbox, in commit order.

It is woken as soon as a unit of work with events commits, and also polls, so that rows
committed by another process, or left behind by a crash between commit and publish, go
out too. Rows are claimed with `FOR UPDATE SKIP LOCKED`, so several replicas of a service
can relay side by side. A row is stamped `published_at` only after RabbitMQ has confirmed
it: a crash in between publishes it again with the same `message_id`, which the
consumers' inboxes absorb.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from typing import Any

import aiormq
from aiormq.abc import DeliveredMessage
from faststream.rabbit import RabbitBroker
from sqlalchemy import Row, Table, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from saga_log import metrics
from saga_log.faults import FaultPlan

log = logging.getLogger(__name__)


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
        fault_plan: FaultPlan | None = None,
    ) -> None:
        self._engine = engine
        self._outbox = outbox
        self._broker = broker
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._publish_timeout = publish_timeout
        self._retention = retention
        self._published_metric = metrics.OUTBOX_PUBLISHED.labels(service)
        self._faults = fault_plan or FaultPlan()
        self._wakeup = asyncio.Event()
        self._last_prune = 0.0
        self.published = 0

    def wake(self) -> None:
        """Called after a commit that wrote outbox rows."""
        self._wakeup.set()

    async def run(self) -> None:
        """Relay until cancelled; errors are logged and retried after the poll interval."""
        while True:
            self._wakeup.clear()
            try:
                while await self.relay_once() == self._batch_size:
                    pass
                await self._prune_if_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying after the poll interval")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._poll_interval)

    async def relay_once(self) -> int:
        """Publish one batch of unpublished rows; returns how many rows it claimed."""
        outbox = self._outbox
        async with self._engine.begin() as connection:
            rows = (
                await connection.execute(
                    select(outbox)
                    .where(outbox.c.published_at.is_(None))
                    .order_by(outbox.c.position)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            # One channel keeps publish order; confirms are awaited together (pipelined).
            results = await asyncio.gather(
                *(self._publish(row) for row in rows), return_exceptions=True
            )
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
        self.published += len(done)
        self._published_metric.inc(len(done))
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            raise RuntimeError(
                f"{len(failures)} of {len(rows)} outbox messages were not confirmed: "
                f"{failures[0]!r}"
            )
        return len(rows)

    async def _publish(self, row: Row[Any]) -> None:
        confirmation = await self._broker.publish(
            row.body,
            exchange=row.exchange,
            routing_key=row.routing_key,
            persist=True,
            mandatory=True,
            timeout=self._publish_timeout,
            message_id=str(row.message_id),
            correlation_id=row.correlation_id,
            message_type=row.message_type,
            headers=row.headers,
            content_type="application/json",
            timestamp=row.created_at,
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
        async with self._engine.begin() as connection:
            await connection.execute(
                delete(outbox).where(outbox.c.published_at < func.now() - self._retention)
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
