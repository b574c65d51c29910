"""How a service handles one delivery: decode, deduplicate, handle, commit, ack.

The ack comes only after the local transaction has committed. What cannot commit is
never lost:

- a body that can never be valid goes to `<queue>.dlq`, with headers that say which
  service refused it, why and when;
- any other failure (the database is down, the broker hiccups, a bug) is retried after a
  delay on the queue's retry tiers, the attempt count in the `saga-attempt` header; when
  the budget is spent the message is parked on `<queue>.parked` for an operator.

Business failures are not exceptions: a handler answers them with an event.

Deliveries are handled in batches (group commit): what a consumer has in hand when it is
free is handled in one transaction (one inbox insert for all, the handlers in saga order,
one outbox insert, one commit, one fsync), then acked. A batch that fails in any way is
rolled back whole and its messages are handled one by one, each with the rules above, so a
batch changes how many transactions there are, never what any message does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aiormq
from aio_pika.abc import AbstractIncomingMessage
from aiormq.abc import DeliveredMessage
from faststream.rabbit import RabbitBroker

from contracts import (
    COMPENSATION_STEPS,
    EVENTS_BY_NAME,
    EXCHANGE,
    Consumer,
    Event,
    InvalidMessage,
    MessageParked,
    SagaCompensationFailed,
    decode,
    encode,
)
from saga_log import metrics
from saga_log.db import Delivery, UnitOfWork
from saga_log.faults import FaultPlan
from saga_log.retry import RetryPolicy

log = logging.getLogger(__name__)

ATTEMPT_HEADER = "saga-attempt"
ROUTING_KEY_HEADER = "saga-routing-key"

Handler = Callable[[UnitOfWork, Any, str], Awaitable[None]]
#: Handles many claimed messages at once: (message, message_id, delivery) in saga order.
BatchHandler = Callable[[UnitOfWork, Sequence[tuple[Any, str, "Delivery"]]], Awaitable[None]]


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


@dataclass
class Stats:
    """What a consumer has done since its process started (shown on /health)."""

    handled: int = 0
    duplicates: int = 0
    retried: int = 0
    parked: int = 0
    dead_lettered: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Subscription:
    """A consumer of the topology and the handler that does its work.

    The handler receives the unit of work, the decoded message and the message's id (the
    causation id of whatever it publishes); it must not commit: the delivery commits once,
    after it, together with the inbox row.
    """

    consumer: Consumer
    handler: Handler
    #: Answers a body that failed validation with an event (e.g. OrderRejected), if it can.
    on_invalid: Callable[[bytes, InvalidMessage], Event | None] | None = None
    #: Does the work of a whole batch in fewer statements than `handler` once per message
    #: (the history); must have the same effect as `handler` applied to each in turn.
    batch_handler: BatchHandler | None = None


@dataclass
class _Pending:
    """A decoded delivery waiting for its batch."""

    raw: AbstractIncomingMessage
    message: Any
    message_id: str
    received_at: datetime
    started: float
    #: True once it is settled (acked with its batch, or alone); False: handle it alone.
    settled: asyncio.Future[bool]

    def delivery(self) -> Delivery:
        return _delivery(self.raw, self.message_id, self.received_at)


class _HandleAlone(Exception):
    """A batch met something only the one-message path handles (a failed compensation)."""


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
        publish_timeout: float = 10.0,
        retry_budget: int | None = None,
        fault_plan: FaultPlan | None = None,
        batch_size: int = 1,
    ) -> None:
        self.subscription = subscription
        self.consumer = subscription.consumer
        self._broker = broker
        self._unit_of_work = unit_of_work
        self._retry = retry_policy
        self._service = service
        self._publish_timeout = publish_timeout
        self._budget = retry_policy.max_attempts if retry_budget is None else retry_budget
        self._faults = fault_plan or FaultPlan()
        self._batch_size = batch_size
        self._waiting: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self.stats = Stats()

    async def handle(self, raw: AbstractIncomingMessage) -> None:
        """Handle `raw` and settle it (ack, or reject to the dead-letter queue as a last resort)."""
        if self._batch_size > 1:
            try:
                message = decode(self._model(raw), raw.body)
            except InvalidMessage:
                pass  # the one-message path dead-letters it
            else:
                await self._batched(raw, message)
                return
        await self._settle(raw)

    async def _settle(self, raw: AbstractIncomingMessage, message: Any = None) -> None:
        """The one-message path: handle `raw` (decoded already if `message` is given) in a
        transaction of its own, then ack it, or nack it if even retrying failed."""
        try:
            await self._handle(raw, message)
        except (Exception, asyncio.CancelledError) as exc:
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
                raise  # we are being stopped: RabbitMQ redelivers what was not acked
            # Re-routing the message failed too (the broker is going away; aiormq cancels
            # its pending publishes then). Nack with requeue: if the channel is alive it
            # comes back now, else RabbitMQ redelivers it once we reconnect. The quorum
            # queue's delivery limit bounds the loop.
            log.warning(
                "could not settle message; left to RabbitMQ to redeliver",
                extra={**self._fields(raw), "error": repr(exc)},
            )
            with contextlib.suppress(Exception):
                await raw.nack(requeue=True)
        else:
            await raw.ack()

    async def _batched(self, raw: AbstractIncomingMessage, message: Any) -> None:
        """Join the next batch; if the batch fails, take the one-message path."""
        pending = _Pending(
            raw=raw,
            message=message,
            message_id=self._message_id(message, raw),
            received_at=datetime.now(UTC),
            started=time.perf_counter(),
            settled=asyncio.get_running_loop().create_future(),
        )
        self._waiting.append(pending)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name=f"{self.consumer.queue}-batch")
        # Shielded: a delivery task cancelled at shutdown must not cancel its whole batch;
        # what the batch does not ack, RabbitMQ redelivers.
        if not await asyncio.shield(pending.settled):
            await self._settle(raw, message)

    async def _flush(self) -> None:
        # One batch at a time per consumer, even a batch of one: what arrives while a
        # transaction runs makes the next batch (group commit), so batches grow with load
        # and a lone message at low load waits for nothing.
        try:
            while self._waiting:
                batch = self._waiting[: self._batch_size]
                del self._waiting[: len(batch)]
                try:
                    if len(batch) == 1:
                        # Nothing to share: the one-message path at once, so that a failure
                        # goes straight to its retry instead of being run a second time.
                        await self._settle(batch[0].raw, batch[0].message)
                        committed = True
                    else:
                        committed = await self._run_batch(batch)
                except BaseException:
                    for pending in batch:
                        if not pending.settled.done():
                            pending.settled.set_result(False)
                    raise
                for pending in batch:
                    if not pending.settled.done():
                        pending.settled.set_result(committed)
        finally:
            for pending in self._waiting:
                if not pending.settled.done():
                    pending.settled.set_result(False)
            self._waiting.clear()

    async def _run_batch(self, batch: list[_Pending]) -> bool:
        # Saga order: every batch takes the sagas' locks in the same order, so two batches
        # (in this process or another) never wait for each other in a cycle. The sort is
        # stable: one saga's messages keep their order of arrival.
        ordered = sorted(batch, key=lambda p: str(p.message.order_id))
        queue = self.consumer.queue
        failed: list[tuple[_Pending, SagaCompensationFailed]] = []
        try:
            async with self._unit_of_work() as uow:
                keys = [_claim_key(p.message_id, p.raw) for p in ordered]
                claimed = await uow.claim_many(
                    queue,
                    [(key, type(p.message).__name__) for key, p in zip(keys, ordered, strict=True)],
                )
                fresh: list[_Pending] = []
                duplicates: list[_Pending] = []
                for key, pending in zip(keys, ordered, strict=True):
                    if key in claimed:
                        claimed.discard(key)
                        fresh.append(pending)
                    else:
                        duplicates.append(pending)
                for pending in fresh:
                    await self._faults.before_handling(queue, _attempt(pending.raw))
                batch_handler = self.subscription.batch_handler
                if batch_handler is not None:
                    await batch_handler(
                        uow, [(p.message, p.message_id, p.delivery()) for p in fresh]
                    )
                    if _compensation_failure(uow.pending) is not None:
                        raise _HandleAlone  # which message failed is not known set-wise
                else:
                    for pending in fresh:
                        uow.delivery = pending.delivery()
                        before = len(uow.pending)
                        await self.subscription.handler(uow, pending.message, pending.message_id)
                        failure = _compensation_failure(uow.pending[before:])
                        if failure is not None:
                            failed.append((pending, failure))
                # As on the one-message path: a failed compensation's message is parked
                # before the commit that records it as handled.
                for pending, failure in failed:
                    await self._park(
                        pending.raw,
                        pending.message,
                        f"{failure.step} failed: {failure.error}",
                        {**self._fields(pending.raw), "message_id": pending.message_id},
                        0,
                    )
                self._faults.crash_point("before_commit", queue)
                await uow.commit()
                self._faults.crash_point("after_commit", queue)
        except Exception as exc:
            if not isinstance(exc, _HandleAlone):
                log.info(
                    "batch failed; its messages are handled one by one",
                    extra={"queue": queue, "size": len(batch), "error": repr(exc)},
                )
            return False
        acks = await asyncio.gather(*(p.raw.ack() for p in batch), return_exceptions=True)
        now = time.perf_counter()
        seconds = metrics.HANDLER_SECONDS.labels(self._service, queue)
        for pending, ack in zip(batch, acks, strict=True):
            if isinstance(ack, BaseException):
                # Committed but not acked: RabbitMQ redelivers it and the inbox absorbs it.
                log.warning(
                    "ack failed after commit; the redelivery will be a duplicate",
                    extra={**self._fields(pending.raw), "error": repr(ack)},
                )
        for pending in duplicates:
            self.stats.duplicates += 1
            self._count(pending.message, "duplicate")
        parked = {id(pending) for pending, _ in failed}
        handled = [pending for pending in fresh if id(pending) not in parked]
        for pending in handled:
            self.stats.handled += 1
            self._count(pending.message, "handled")
            seconds.observe(now - pending.started)
        if log.isEnabledFor(logging.INFO):
            for pending in handled:
                log.info(
                    "message handled",
                    extra={
                        **self._fields(pending.raw),
                        "message_id": pending.message_id,
                        "order_id": pending.message.order_id,
                        "batch": len(batch),
                        "ms": round(1000 * (now - pending.started), 2),
                    },
                )
        return True

    async def _handle(self, raw: AbstractIncomingMessage, message: Any = None) -> None:
        started = time.perf_counter()
        try:
            if message is None:
                message = decode(self._model(raw), raw.body)
        except InvalidMessage as exc:
            await self._dead_letter(raw, exc.reason)
            answer = (
                self.subscription.on_invalid(raw.body, exc)
                if self.subscription.on_invalid
                else None
            )
            if answer is not None:
                await self._publish_now(answer)
            return
        message_id = self._message_id(message, raw)
        fields = {**self._fields(raw), "message_id": message_id, "order_id": message.order_id}
        try:
            async with self._unit_of_work() as uow:
                uow.delivery = _delivery(raw, message_id, datetime.now(UTC))
                if not await uow.claim(
                    self.consumer.queue, _claim_key(message_id, raw), type(message).__name__
                ):
                    log.info("duplicate message ignored", extra=fields)
                    self.stats.duplicates += 1
                    self._count(message, "duplicate")
                    return
                await self._faults.before_handling(self.consumer.queue, _attempt(raw))
                await self.subscription.handler(uow, message, message_id)
                # A failed compensation stops the chain: its message waits on the parking
                # queue to be redriven once the cause is fixed (see _claim_key).
                failure = _compensation_failure(uow.pending)
                if failure is not None:
                    # Parked before the commit that records it as handled: a crash in
                    # between parks it again (a copy the operator tools fold), never not.
                    reason = f"{failure.step} failed: {failure.error}"
                    await self._park(raw, message, reason, fields, 0)
                self._faults.crash_point("before_commit", self.consumer.queue)
                await uow.commit()
                self._faults.crash_point("after_commit", self.consumer.queue)
                emitted = [event.type for event in uow.pending]
        except Exception as exc:
            await self._retry_later(raw, message, message_id, exc, fields)
            return
        if failure is not None:
            return
        elapsed = time.perf_counter() - started
        self.stats.handled += 1
        self._count(message, "handled")
        metrics.HANDLER_SECONDS.labels(self._service, self.consumer.queue).observe(elapsed)
        log.info(
            "message handled",
            extra={
                **fields,
                "emitted": emitted,
                "ms": round(1000 * elapsed, 2),
            },
        )

    def _model(self, raw: AbstractIncomingMessage) -> type[Any]:
        messages = self.consumer.messages
        if len(messages) == 1:
            return messages[0]
        # Retries come back through the default exchange, so the routing key is no guide;
        # the AMQP type property and the body's `type` are.
        name = raw.type or _peek_type(raw.body)
        model = EVENTS_BY_NAME.get(name or "")
        if model is None or model not in messages:
            accepted = ", ".join(m.__name__ for m in messages)
            raise InvalidMessage(
                f"unexpected message type {name!r}: {self.consumer.queue} accepts {accepted}"
            )
        return model

    @staticmethod
    def _message_id(message: Any, raw: AbstractIncomingMessage) -> str:
        key: str = message.inbox_key()
        return key

    async def _dead_letter(self, raw: AbstractIncomingMessage, reason: str) -> None:
        headers = {
            "saga-rejected-by": self._service,
            "saga-rejected-queue": self.consumer.queue,
            "saga-reject-reason": reason[:2000],
            "saga-rejected-at": datetime.now(UTC).isoformat(),
        }
        log.warning("message dead-lettered", extra={**self._fields(raw), "reason": reason[:2000]})
        await self._republish(raw, self.consumer.dead_letter_queue, headers)
        self.stats.dead_lettered += 1
        metrics.DEAD_LETTERS.labels(self._service, self.consumer.queue).inc()
        metrics.MESSAGES.labels(
            self._service, self.consumer.queue, raw.type or "", "dead_lettered"
        ).inc()

    async def _retry_later(
        self,
        raw: AbstractIncomingMessage,
        message: Any,
        message_id: str,
        exc: BaseException,
        fields: Mapping[str, Any],
    ) -> None:
        retry = _attempt(raw) + 1
        error = f"{type(exc).__name__}: {exc}"[:2000]
        if retry > self._budget:
            log.error("retries exhausted", exc_info=exc, extra={**fields, "attempts": retry})
            await self._park(raw, message, error, fields, retry - 1)
            if self.consumer.step in COMPENSATION_STEPS:
                # A compensation that cannot run is the sample's "failed" notification.
                await self._publish_now(
                    SagaCompensationFailed.caused_by(
                        f"exhausted:{self.consumer.queue}:{message_id}",
                        producer=self._service,
                        order_id=message.order_id,
                        step=self.consumer.step,
                        error=error,
                        cause=getattr(message, "error", None) or getattr(message, "cause", ""),
                        transaction_id=None,
                        attempts=retry,
                    )
                )
            else:
                await self._announce_parked(message, message_id, error, attempts=retry)
            return
        delay = self._retry.delay(retry)
        log.warning(
            "handler failed, retry scheduled",
            exc_info=exc,
            extra={**fields, "retry": retry, "delay_s": round(delay, 3), "error": error},
        )
        headers = {ATTEMPT_HEADER: retry, "saga-last-error": error}
        await self._republish(
            raw, self.consumer.retry_queue(retry), headers, expiration=max(delay, 0.001)
        )
        self.stats.retried += 1
        self._count(message, "retried")
        metrics.RETRIES.labels(self._service, self.consumer.queue).inc()

    async def _park(
        self,
        raw: AbstractIncomingMessage,
        message: Any,
        error: str,
        fields: Mapping[str, Any],
        retries: int,
    ) -> None:
        log.error("message parked", extra={**fields, "error": error, "retries": retries})
        headers = {
            ATTEMPT_HEADER: retries,
            "saga-parked-by": self._service,
            "saga-parked-queue": self.consumer.queue,
            "saga-parked-at": datetime.now(UTC).isoformat(),
            "saga-last-error": error,
        }
        await self._republish(raw, self.consumer.parking_queue, headers)
        self.stats.parked += 1
        self._count(message, "parked")
        metrics.PARKED.labels(self._service, self.consumer.queue).inc()

    def _count(self, message: Any, outcome: str) -> None:
        kind = getattr(message, "type", None) or type(message).__name__
        metrics.MESSAGES.labels(self._service, self.consumer.queue, kind, outcome).inc()

    async def _announce_parked(
        self, message: Any, message_id: str, error: str, *, attempts: int
    ) -> None:
        await self._publish_now(
            MessageParked.caused_by(
                f"parked:{self.consumer.queue}:{message_id}",
                producer=self._service,
                order_id=message.order_id,
                queue=self.consumer.queue,
                step=self.consumer.step,
                parked_type=getattr(message, "type", None) or type(message).__name__,
                parked_message_id=message_id,
                error=error,
                attempts=attempts,
            )
        )

    async def _publish_now(self, event: Event) -> None:
        # Notifications of what the runtime did with a message (parked, rejected): the
        # database may be why, so they go straight to the broker, not through the outbox.
        confirmation = await self._broker.publish(
            encode(event),
            exchange=EXCHANGE,
            routing_key=event.routing_key,
            persist=True,
            mandatory=True,
            timeout=self._publish_timeout,
            message_id=str(event.message_id),
            correlation_id=event.correlation_id,
            message_type=event.type,
            content_type="application/json",
        )
        if not isinstance(confirmation, aiormq.spec.Basic.Ack | DeliveredMessage):
            raise RuntimeError(f"RabbitMQ did not confirm {event.type}: {confirmation!r}")

    async def _republish(
        self,
        raw: AbstractIncomingMessage,
        queue: str,
        extra_headers: Mapping[str, Any],
        *,
        expiration: float | None = None,
    ) -> None:
        headers = dict(_headers(raw))
        headers.setdefault(ROUTING_KEY_HEADER, raw.routing_key or "")
        headers.update(extra_headers)
        confirmation = await self._broker.publish(
            raw.body,
            routing_key=queue,
            persist=True,
            mandatory=True,
            timeout=self._publish_timeout,
            headers=headers,
            content_type=raw.content_type,
            message_id=raw.message_id,
            correlation_id=raw.correlation_id,
            message_type=raw.type,
            timestamp=raw.timestamp,
            expiration=expiration,
        )
        if not isinstance(confirmation, aiormq.spec.Basic.Ack):
            raise RuntimeError(f"RabbitMQ did not confirm the copy to {queue}: {confirmation!r}")

    def _fields(self, raw: AbstractIncomingMessage) -> dict[str, Any]:
        return {
            "service": self._service,
            "queue": self.consumer.queue,
            "routing_key": raw.routing_key,
            "amqp_message_id": raw.message_id,
            "redelivered": raw.redelivered,
        }


def one_per_saga(batch: Sequence[tuple[Any, str, Any]]) -> bool:
    """Does each saga appear once in `batch`? A batch handler that works set-wise can rely
    on it only then; otherwise one saga's messages must be applied one after the other."""
    sagas = {message.order_id for message, _, _ in batch}
    return len(sagas) == len(batch)


def _claim_key(message_id: str, raw: AbstractIncomingMessage) -> str:
    """The inbox key of a delivery: its message id, except for a message an operator
    redrove from a parking queue, which must run again (its first run may have been
    recorded, as a failed compensation is); each redrive is a run of its own."""
    headers = _headers(raw)
    source = str(headers.get("saga-redriven-from", ""))
    if source.endswith(".parked"):
        return f"{message_id}|redriven:{headers.get('saga-redriven-at', '')}"
    return message_id


def _compensation_failure(events: Sequence[Event]) -> SagaCompensationFailed | None:
    for event in events:
        if isinstance(event, SagaCompensationFailed):
            return event
    return None


def _peek_type(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    kind = data.get("type") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else None


def _headers(raw: AbstractIncomingMessage) -> Mapping[str, Any]:
    return raw.headers or {}


def _attempt(raw: AbstractIncomingMessage) -> int:
    """Retries of this message so far (0 the first time)."""
    return int(_headers(raw).get(ATTEMPT_HEADER, 0))


def _delivery(raw: AbstractIncomingMessage, message_id: str, received_at: datetime) -> Delivery:
    headers = _headers(raw)
    return Delivery(
        message_id=message_id,
        routing_key=headers.get(ROUTING_KEY_HEADER) or raw.routing_key or "",
        headers=headers,
        received_at=received_at,
        redelivered=bool(raw.redelivered),
    )
