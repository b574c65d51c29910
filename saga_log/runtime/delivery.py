"""How a service handles a delivery: decode, deduplicate, handle, commit, ack.

The ack comes only after the local transaction has committed. What cannot commit is
never lost (see `holding`): a body that can never be valid is dead-lettered with a reason;
any other failure (the database is down, the broker hiccups, a bug) is retried after a
delay, and parked for an operator when the budget is spent. Business failures are not
exceptions: a handler answers them with an event.

`transact` is the one transaction both paths share: a single delivery (here) and a batch
of deliveries (`batching`, group commit) claim their inbox keys, run the handler, park
what a failed compensation leaves, and commit, in the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from aio_pika.abc import AbstractIncomingMessage
from faststream.rabbit import RabbitBroker

from contracts import CompensationFailed, InvalidMessage, decode
from saga_log.runtime import metrics
from saga_log.runtime.batching import GroupCommit, Outcome, Pending
from saga_log.runtime.fault_plan import FaultPlan
from saga_log.runtime.holding import (
    REDRIVEN_FROM_HEADER,
    ROUTING_KEY_HEADER,
    Holding,
    Protection,
    Stats,
    fields,
)
from saga_log.runtime.retry import RetryPolicy
from saga_log.runtime.subscription import Delivery, Received, Subscription
from saga_log.runtime.tracing import NO_TRACE, NO_TRACER, MessageTrace, Tracer
from saga_log.runtime.trust import Trust
from saga_log.runtime.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


class DeliveryHandler:
    """Handles the deliveries of one subscription; see the module docstring."""

    def __init__(
        self,
        subscription: Subscription,
        *,
        broker: RabbitBroker,
        unit_of_work: UnitOfWorkFactory,
        retry_policy: RetryPolicy,
        service: str,
        trust: Trust,
        publish_timeout: float = 10.0,
        retry_budget: int | None = None,
        fault_plan: FaultPlan | None = None,
        batch_size: int = 1,
        linger: float = 0.0,
        protect: Protection | None = None,
        tracer: Tracer = NO_TRACER,
    ) -> None:
        self.subscription = subscription
        self.consumer = subscription.consumer
        self.service = service
        self.trust = trust
        self._unit_of_work = unit_of_work
        self._faults = fault_plan or FaultPlan()
        self.tracer = tracer
        self.stats = Stats()
        self.holding = Holding(
            self.consumer,
            broker=broker,
            service=service,
            trust=trust,
            retry_policy=retry_policy,
            budget=retry_policy.max_attempts if retry_budget is None else retry_budget,
            publish_timeout=publish_timeout,
            stats=self.stats,
            protect=protect,
        )
        self._batches = (
            GroupCommit(self, batch_size, queue=self.consumer.queue, linger=linger)
            if batch_size > 1
            else None
        )

    async def handle(self, raw: AbstractIncomingMessage) -> None:
        """Handle `raw` and settle it: acked once its work committed (in a batch, or alone)."""
        trace = self.tracer.arrived(raw, self.consumer.queue)
        message = self.decode_or_none(raw)
        trace.read(message)
        if self._batches is not None and message is not None:
            await self._batches.join(raw, message, trace)
        else:
            await self.settle(raw, message, trace)
        if self._batches is not None:
            # Returned (not raised): acked, nacked or rejected, whichever way it went.
            self._batches.settled_tags.settled(raw)

    async def settle(
        self, raw: AbstractIncomingMessage, message: Any = None, trace: MessageTrace = NO_TRACE
    ) -> None:
        """The one-message path: handle `raw` in a transaction of its own, then ack it; nack
        it, as a last resort, if even re-routing it failed."""
        try:
            await self._handle(raw, message, trace)
        except (Exception, asyncio.CancelledError) as exc:
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
                raise  # we are being stopped: RabbitMQ redelivers what was not acked
            # Re-routing failed too (the broker is going away, or the node holding the
            # retry tier is down and returns the copy). Requeued: if the channel lives it
            # comes back, else RabbitMQ redelivers it once we reconnect. The delivery limit
            # bounds the loop; the pause before the requeue keeps it from spending that
            # limit in a second while a node is away (it once dead-lettered live sagas'
            # messages during a node's 30 s restart).
            delay = requeue_delay(raw.headers)
            log.warning(
                "could not settle message; left to RabbitMQ to redeliver",
                extra={**fields(raw, self.holding), "error": repr(exc), "requeue_in_s": delay},
            )
            await asyncio.sleep(delay)  # cancelled at shutdown: RabbitMQ redelivers it
            with contextlib.suppress(Exception):
                await raw.nack(requeue=True)
        else:
            await raw.ack()
        finally:
            trace.end()

    async def _handle(
        self, raw: AbstractIncomingMessage, message: Any, trace: MessageTrace
    ) -> None:
        if message is None:
            try:
                message = self.decode(raw)
            except InvalidMessage as exc:
                trace.failed(exc)
                await self.holding.reject(raw, exc, self.subscription.on_invalid)
                return
            except Exception as exc:
                # Reading a message does not touch the database: what fails here fails every
                # time (a bug), so it is dead-lettered, to be replayed once fixed, not looped.
                log.error("could not read message", exc_info=exc, extra=fields(raw, self.holding))
                trace.failed(exc)
                await self.holding.dead_letter(raw, f"could not read it: {exc!r}"[:2000])
                return
        pending = Pending(raw, self.received(raw, message), trace=trace)
        try:
            outcome = await self.transact([pending])
        except Exception as exc:
            trace.failed(exc)
            await self.holding.retry_later(raw, pending.received, exc)
            return
        self.account(outcome, batch=1)

    async def transact(self, batch: Sequence[Pending]) -> Outcome:
        """Handle `batch` in one transaction: claim, handle, park failed compensations,
        commit. Raises (having rolled back) if anything fails."""
        queue = self.consumer.queue
        # Saga order: every transaction takes its sagas' locks in one order, so two never
        # wait for each other in a cycle. Stable: one saga's messages keep their order.
        ordered = sorted(batch, key=lambda p: p.received.saga_id)
        traced = self.tracer.on  # off: no clock read, no call (see tracing)
        await self._faults.before_transaction(queue)
        began = time.time_ns() if traced else 0
        async with self._unit_of_work() as uow:
            uow.restrict(self.consumer.emits)
            if traced:
                uow.trace_context.update((p.received.message_id, p.trace.carrier) for p in ordered)
            fresh, duplicates = await self._claim(uow, ordered)
            for pending in fresh:
                await self._faults.before_handling(queue, self.holding.attempt(pending.raw))
            if fresh:
                await self.subscription.handler(uow, [p.received for p in fresh])
            parked = await self._park_failed_compensations(fresh, uow)
            self._faults.crash_point("before_commit", queue)
            committing = time.time_ns() if traced else 0
            await uow.commit()
            committed = time.time_ns() if traced else 0
            self._faults.crash_point("after_commit", queue)
            if uow.pending:
                # Let the relay (woken by the commit) put the events on the wire before
                # this delivery goes on to its ack and bookkeeping: one loop turn, and the
                # next hop starts sooner.
                await asyncio.sleep(0)
        if traced:
            for pending in ordered:
                pending.trace.transaction(began, committing, committed, len(ordered))
        handled = [p for p in fresh if p not in parked]
        return Outcome(handled, duplicates, parked, [event.type for event in uow.pending])

    async def _claim(
        self, uow: UnitOfWork, ordered: Sequence[Pending]
    ) -> tuple[list[Pending], list[Pending]]:
        """Lock the batch's sagas and insert its inbox keys, in one statement: (fresh,
        duplicates). Every handler then runs with its sagas' locks held."""
        keys = [claim_key(p.received.message_id, p.raw, self.trust) for p in ordered]
        claimed = await uow.claim_many(
            self.consumer.queue,
            [
                (key, type(p.received.message).__name__)
                for key, p in zip(keys, ordered, strict=True)
            ],
            saga_ids=[p.received.saga_id for p in ordered],
        )
        fresh: list[Pending] = []
        duplicates: list[Pending] = []
        for key, pending in zip(keys, ordered, strict=True):
            if key in claimed:
                claimed.discard(key)  # the same message twice in a batch is claimed once
                fresh.append(pending)
            else:
                duplicates.append(pending)
        return fresh, duplicates

    async def _park_failed_compensations(
        self, fresh: Sequence[Pending], uow: UnitOfWork
    ) -> list[Pending]:
        """A failed compensation stops the chain: its message waits on the parking queue
        to be redriven once the cause is fixed (see `claim_key`). Parked before the commit
        that records it as handled: a crash in between parks it again (a copy the operator
        tools fold), never not at all."""
        failures = [e for e in uow.pending if isinstance(e, CompensationFailed)]
        if not failures:
            return []
        by_id = {p.received.message_id: p for p in fresh}
        unknown = [f.causation_id for f in failures if f.causation_id not in by_id]
        if unknown:
            # A handler built a compensation's failure from another cause than the message
            # it handled: a bug. Nothing is parked yet; the transaction rolls back.
            raise RuntimeError(f"a compensation failure names no message of this batch: {unknown}")
        parked = [by_id[failure.causation_id] for failure in failures]
        for pending, failure in zip(parked, failures, strict=True):
            await self.holding.park(
                pending.raw, pending.received, f"{failure.step} failed: {failure.error}", 0
            )
        return parked

    def account(self, outcome: Outcome, *, batch: int) -> None:
        """Count and log what a committed transaction did."""
        now = time.perf_counter()
        seconds = metrics.HANDLER_SECONDS.labels(self.service, self.consumer.queue)
        for pending in outcome.duplicates:
            self.stats.duplicates += 1
            self.holding.count("duplicate", pending.received.message)
            log.info("duplicate message ignored", extra=self._log_fields(pending))
        for pending in outcome.handled:
            self.stats.handled += 1
            self.holding.count("handled", pending.received.message)
            seconds.observe(now - pending.started)
        if log.isEnabledFor(logging.INFO):
            for pending in outcome.handled:
                log.info(
                    "message handled",
                    extra={
                        **self._log_fields(pending),
                        "batch": batch,
                        "emitted": outcome.emitted if batch == 1 else None,
                        "ms": round(1000 * (now - pending.started), 2),
                    },
                )

    def _log_fields(self, pending: Pending) -> dict[str, Any]:
        return {
            **fields(pending.raw, self.holding),
            "message_id": pending.received.message_id,
            "saga_id": pending.received.saga_id,
        }

    def decode(self, raw: AbstractIncomingMessage) -> Any:
        """The message in `raw`, from its declared producer; `InvalidMessage` (or
        `Untrusted`) says why not."""
        message = decode(self._model(raw), raw.body)
        self.trust.check(raw, message)
        return message

    def decode_or_none(self, raw: AbstractIncomingMessage) -> Any:
        """The message in `raw`, or None if it is not valid (the one-message path says why)."""
        try:
            return self.decode(raw)
        except Exception:
            return None

    def received(self, raw: AbstractIncomingMessage, message: Any) -> Received[Any]:
        headers = raw.headers or {}
        # A copy of this service's runtime (or an operator's) says where the original came.
        steered = self.trust.from_runtime(raw) or self.trust.from_operator(raw)
        routing_key = headers.get(ROUTING_KEY_HEADER) if steered else None
        return Received(
            message=message,
            message_id=message.inbox_key(),
            delivery=Delivery(
                routing_key=str(routing_key or raw.routing_key or ""),
                headers=headers,
                received_at=datetime.now(UTC),
                redelivered=bool(raw.redelivered),
            ),
        )

    def _model(self, raw: AbstractIncomingMessage) -> type[Any]:
        messages = self.consumer.messages
        if len(messages) == 1:
            only = messages[0]
            named = getattr(only, "type_name", None)
            if named is None or raw.type in (None, "", named()):
                return only  # (a body naming another type fails its validation)
        # Retries come back through the default exchange, so the routing key is no guide;
        # the AMQP type property and the body's `type` are.
        name = raw.type or _peek_type(raw.body)
        for model in messages:
            if model.type_name() == name:
                return model
        accepted = ", ".join(m.__name__ for m in messages)
        raise InvalidMessage(
            f"unexpected message type {name[:128] if name else name!r}: "
            f"{self.consumer.queue} accepts {accepted}"
        )


#: Seconds before a message that could not be settled goes back to its queue: one more
#: each time it has come back (quorum queues count in `x-delivery-count`), up to the cap.
#: With the delivery limit of 20 that is about 90 s of trying before RabbitMQ dead-letters.
REQUEUE_DELAY_STEP = 1.0
REQUEUE_DELAY_CAP = 5.0


def requeue_delay(headers: Any) -> float:
    """How long to hold a message that could not be settled before requeueing it."""
    count = (headers or {}).get("x-delivery-count", 0)
    try:
        returned = max(0, int(count))
    except (TypeError, ValueError):
        returned = 0
    return min(REQUEUE_DELAY_STEP * (returned + 1), REQUEUE_DELAY_CAP)


def claim_key(message_id: str, raw: AbstractIncomingMessage, trust: Trust) -> str:
    """The inbox key of a delivery: its message id, except for a message an operator
    redrove from a parking queue, which must run again (its first run may have been
    recorded, as a failed compensation is); each redrive is a run of its own. Only an
    operator's redrive marks count: on the operator's copy, or on this runtime's retry of
    it (the runtime drops such marks from anyone else's message when it copies one)."""
    headers = raw.headers or {}
    source = str(headers.get(REDRIVEN_FROM_HEADER, ""))
    if source.endswith(".parked") and (trust.from_operator(raw) or trust.from_runtime(raw)):
        at = headers.get("saga-redriven-at", "")
        return f"{message_id}|redriven:{at.decode() if isinstance(at, bytes) else at}"
    return message_id


def _peek_type(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    kind = data.get("type") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else None
