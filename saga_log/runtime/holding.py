"""Where a message goes when it cannot simply be handled: a delayed retry, the parking
queue (its retry budget spent, or a compensation that failed), or the dead-letter queue
(it can never be valid). Each is a confirmed, persistent copy on a queue of the consumer's
own; the original is acked only after the copy is confirmed.

Each copy goes through the service's own holding exchange (`<service>.holding`: nobody but
the service and operators may publish there), as the service's broker user, recording in
`saga-origin-user` who sent the original (`trust`).

- a retry goes to `<queue>.retry.<n>` with a per-message TTL and the attempt count in the
  `saga-attempt` header, and expires back into the work queue;
- a parked message waits on `<queue>.parked` with `saga-last-error`, and the saga hears of
  it: the step's compensation-failed event for a compensation, `MessageParked` otherwise;
- a dead letter waits on `<queue>.dlq` with who refused it, why and when; its secret
  fields are masked first (a client must send it again: nobody may read them there).

Secret fields never rest in clear on a holding queue: a retry or parked copy has them
sealed when the service holds the field keys (it can open them when the copy comes back),
masked otherwise (`Protection`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiormq
from aio_pika.abc import AbstractIncomingMessage
from aiormq.abc import DeliveredMessage
from faststream.rabbit import RabbitBroker

from contracts import (
    EXCHANGE,
    SECRET_FIELDS,
    Consumer,
    Event,
    FieldCipher,
    InvalidMessage,
    MessageParked,
    encode,
)
from contracts.secrets import masked_body, secret_fields
from contracts.topology import holding_exchange
from saga_log.runtime import metrics
from saga_log.runtime.retry import RetryPolicy
from saga_log.runtime.subscription import Received
from saga_log.runtime.trust import ORIGIN_HEADER, Trust, Untrusted

log = logging.getLogger(__name__)

ATTEMPT_HEADER = "saga-attempt"
#: Set by the operator tools when they send a parked message back (saga_log.ops).
REDRIVEN_FROM_HEADER = "saga-redriven-from"
REDRIVE_HEADERS = (REDRIVEN_FROM_HEADER, "saga-redriven-at")
ROUTING_KEY_HEADER = "saga-routing-key"
#: Retries are counted up to this; any other value in the header counts as a first attempt.
MAX_ATTEMPT = 1000


@dataclass(frozen=True)
class Protection:
    """What a copy of a message may hold: its secret fields sealed when this service can
    seal them (and so open them again), masked otherwise."""

    secrets: frozenset[str] = frozenset()
    cipher: FieldCipher | None = None
    id_field: str | None = None

    @classmethod
    def of(cls, consumer: Consumer, cipher: FieldCipher | None) -> Protection:
        if consumer.saga == "*":  # the history reads every saga's messages
            return cls(frozenset(SECRET_FIELDS))
        secrets = secret_fields(consumer.messages)
        fields = {getattr(m, "saga_id_field", None) for m in consumer.messages}
        id_field = fields.pop() if len(fields) == 1 else None
        return cls(secrets, cipher if secrets else None, id_field)

    def __call__(self, body: bytes) -> bytes:
        if not self.secrets:
            return body
        if self.cipher is not None and self.id_field is not None:
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):
                data = None
            if isinstance(data, dict) and isinstance(data.get(self.id_field), str):
                sealed = self.cipher.seal_fields(data, self.secrets, saga_id=data[self.id_field])
                return body if sealed == data else json.dumps(sealed).encode()
        return masked_body(body, self.secrets)


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


class Holding:
    """Retries, parks and dead-letters the messages of one consumer."""

    def __init__(
        self,
        consumer: Consumer,
        *,
        broker: RabbitBroker,
        service: str,
        trust: Trust,
        retry_policy: RetryPolicy,
        budget: int,
        publish_timeout: float,
        stats: Stats,
        protect: Protection | None = None,
    ) -> None:
        self.consumer = consumer
        self._broker = broker
        self.service = service
        self.trust = trust
        self._retry = retry_policy
        self._budget = budget
        self._publish_timeout = publish_timeout
        self._stats = stats
        self._protect = protect or Protection()

    async def reject(
        self,
        raw: AbstractIncomingMessage,
        error: InvalidMessage,
        answer: Callable[[bytes, InvalidMessage], Event | None] | None,
    ) -> None:
        """Dead-letter a body that can never be valid, and answer it if the service can
        (never a message from an unexpected producer: nobody legitimate is waiting). The
        answer is a courtesy: if it cannot be made or sent, the dead letter stands."""
        await self.dead_letter(raw, error.reason)
        if answer is None or isinstance(error, Untrusted):
            return
        try:
            reply = answer(raw.body, error)
            if reply is not None:
                await self.publish_now(reply)
        except Exception:
            log.warning("no answer to a rejected message", exc_info=True, extra=fields(raw, self))

    async def dead_letter(self, raw: AbstractIncomingMessage, reason: str) -> None:
        headers = {
            "saga-rejected-by": self.service,
            "saga-rejected-queue": self.consumer.queue,
            "saga-reject-reason": reason[:2000],
            "saga-rejected-at": datetime.now(UTC).isoformat(),
        }
        log.warning("message dead-lettered", extra={**fields(raw, self), "reason": reason[:2000]})
        body = masked_body(raw.body, SECRET_FIELDS)
        await self.republish(raw, self.consumer.dead_letter_queue, headers, body=body)
        self._stats.dead_lettered += 1
        metrics.DEAD_LETTERS.labels(self.service, self.consumer.queue).inc()
        self.count("dead_lettered", None)

    async def retry_later(
        self, raw: AbstractIncomingMessage, received: Received[Any], exc: BaseException
    ) -> None:
        """Send the message to its next retry tier, or park it once its budget is spent."""
        retry = self.attempt(raw) + 1
        error = f"{type(exc).__name__}: {exc}"[:2000]
        where = {**fields(raw, self), "message_id": received.message_id}
        if retry > self._budget:
            log.error("retries exhausted", exc_info=exc, extra={**where, "attempts": retry})
            await self.park(raw, received, error, retry - 1)
            await self._announce_parked(received, error, attempts=retry)
            return
        delay = self._retry.delay(retry)
        log.warning(
            "handler failed, retry scheduled",
            exc_info=exc,
            extra={**where, "retry": retry, "delay_s": round(delay, 3), "error": error},
        )
        headers = {ATTEMPT_HEADER: retry, "saga-last-error": error}
        queue = self.consumer.retry_queue(retry)
        await self.republish(
            raw, queue, headers, expiration=max(delay, 0.001), body=self._protect(raw.body)
        )
        self._stats.retried += 1
        self.count("retried", received.message)
        metrics.RETRIES.labels(self.service, self.consumer.queue).inc()

    async def park(
        self, raw: AbstractIncomingMessage, received: Received[Any], error: str, retries: int
    ) -> None:
        where = {**fields(raw, self), "message_id": received.message_id}
        log.error("message parked", extra={**where, "error": error, "retries": retries})
        headers = {
            ATTEMPT_HEADER: retries,
            "saga-parked-by": self.service,
            "saga-parked-queue": self.consumer.queue,
            "saga-parked-at": datetime.now(UTC).isoformat(),
            "saga-last-error": error,
        }
        await self.republish(
            raw, self.consumer.parking_queue, headers, body=self._protect(raw.body)
        )
        self._stats.parked += 1
        self.count("parked", received.message)
        metrics.PARKED.labels(self.service, self.consumer.queue).inc()

    async def _announce_parked(self, received: Received[Any], error: str, *, attempts: int) -> None:
        """Tell the saga: a compensation out of retries is that compensation's failure (the
        chain stops); anything else is a parked message. The history announces nothing:
        it takes no part in any saga (and could not record its own announcement)."""
        consumer, message = self.consumer, received.message
        if consumer.saga == "*":
            return
        if consumer.compensation_failed is not None:
            event: Event = consumer.compensation_failed.caused_by(
                f"exhausted:{consumer.queue}:{received.message_id}",
                producer=self.service,
                saga_id=received.saga_id,
                step=consumer.step,
                error=error,
                cause=getattr(message, "error", None) or getattr(message, "cause", None) or "",
                attempts=attempts,
            )
        else:
            event = MessageParked.caused_by(
                f"parked:{consumer.queue}:{received.message_id}",
                producer=self.service,
                saga_id=received.saga_id,
                saga_type=consumer.saga,
                queue=consumer.queue,
                step=consumer.step,
                parked_type=type_of(message),
                parked_message_id=received.message_id,
                error=error,
                attempts=attempts,
            )
        await self.publish_now(event)

    def count(self, outcome: str, message: Any) -> None:
        """Count a message (None: one that could not be read) by saga type and type."""
        kind = type_of(message) if message is not None else ""
        # The history's queue carries every saga: its messages say which.
        saga = str(getattr(message, "saga_type", self.consumer.saga))
        metrics.MESSAGES.labels(self.service, self.consumer.queue, saga, kind, outcome).inc()

    async def publish_now(self, event: Event) -> None:
        """Publish a notification of what the runtime did with a message (parked,
        rejected): the database may be why, so it goes straight to the broker."""
        confirmation = await self._broker.publish(
            encode(event),
            exchange=EXCHANGE,
            routing_key=event.route(),
            persist=True,
            mandatory=True,
            timeout=self._publish_timeout,
            user_id=self.trust.own,
            message_id=str(event.message_id),
            correlation_id=event.correlation_id,
            message_type=event.type,
            content_type="application/json",
        )
        if not isinstance(confirmation, aiormq.spec.Basic.Ack | DeliveredMessage):
            raise RuntimeError(f"RabbitMQ did not confirm {event.type}: {confirmation!r}")

    async def republish(
        self,
        raw: AbstractIncomingMessage,
        queue: str,
        extra_headers: Mapping[str, Any],
        *,
        expiration: float | None = None,
        body: bytes | None = None,
    ) -> None:
        """A confirmed, persistent copy of `raw` on `queue` (through the holding exchange,
        as this service), with `extra_headers` and who sent the original."""
        headers = dict(raw.headers or {})
        if not self.trust.from_runtime(raw):
            # The first copy records the original's routing key and sender; later copies
            # (a retry of a retry) keep what the first recorded. Redrive marks survive
            # only on an operator's message: nobody else may make one run again.
            headers[ROUTING_KEY_HEADER] = raw.routing_key or ""
            headers[ORIGIN_HEADER] = self.trust.sender(raw) or ""
            if not self.trust.from_operator(raw):
                for name in REDRIVE_HEADERS:
                    headers.pop(name, None)
        headers.update(extra_headers)
        confirmation = await self._broker.publish(
            raw.body if body is None else body,
            exchange=holding_exchange(self.service),
            routing_key=queue,
            user_id=self.trust.own,
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

    def attempt(self, raw: AbstractIncomingMessage) -> int:
        """Retries of this message so far: 0 the first time, and unless this service's own
        runtime counted them (a client's header must not steer the runtime)."""
        return attempt_count(raw) if self.trust.from_runtime(raw) else 0


def attempt_count(raw: AbstractIncomingMessage) -> int:
    """The attempt header, or 0 for any value that is not a small non-negative integer (a
    header must not steer the runtime into a loop)."""
    value = (raw.headers or {}).get(ATTEMPT_HEADER, 0)
    if isinstance(value, bool) or not isinstance(value, int | str | bytes):
        return 0
    try:
        count = int(value)
    except ValueError:
        return 0
    return count if 0 <= count <= MAX_ATTEMPT else 0


def fields(raw: AbstractIncomingMessage, holding: Holding) -> dict[str, Any]:
    """The structured log fields of a delivery."""
    return {
        "service": holding.service,
        "queue": holding.consumer.queue,
        "routing_key": raw.routing_key,
        "amqp_message_id": raw.message_id,
        "redelivered": raw.redelivered,
    }


def type_of(message: Any) -> str:
    kind = getattr(message, "type", None)
    return kind if isinstance(kind, str) else type(message).__name__
