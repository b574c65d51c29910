"""What an operator does with the messages the saga could not handle.

Parked messages (retry budget spent, or a compensation that failed) wait on
`<queue>.parked`; messages that can never be valid wait on `<queue>.dlq`. These functions
list them without taking them off their queue, send them back to their work queue once
the cause is fixed (redrive, replay), or drop them (discard). A replayed message that was
already applied has no second effect: the consumer's inbox knows its id.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from contracts import CONSUMERS, SECRET_FIELDS, Consumer, mask
from contracts.topology import holding_exchange
from saga_log.ops.client import saga_id_of
from saga_log.runtime import ATTEMPT_HEADER

PARKED = "parked"
DEAD = "dlq"


@dataclass(frozen=True)
class HeldMessage:
    """A parked or dead-lettered message, as an operator sees it."""

    queue: str
    work_queue: str
    message_id: str | None
    saga_id: str | None
    type: str | None
    reason: str
    held_at: str | None
    attempts: int
    body: bytes

    def as_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "work_queue": self.work_queue,
            "message_id": self.message_id,
            "saga_id": self.saga_id,
            "type": self.type,
            "reason": self.reason,
            "held_at": self.held_at,
            "attempts": self.attempts,
            "body": _shown(self.body),
        }


def _shown(body: bytes) -> Any:
    """A held body as an operator may see it: secret fields masked."""
    try:
        return mask(json.loads(body), SECRET_FIELDS)
    except (ValueError, RecursionError):
        return body.decode("utf-8", "replace")


def holding_queues(kind: str, consumers: Sequence[Consumer] = CONSUMERS) -> dict[str, Consumer]:
    """Every `<queue>.parked` (kind "parked") or `<queue>.dlq` (kind "dlq"), by name."""
    return {f"{consumer.queue}.{kind}": consumer for consumer in consumers}


@contextlib.asynccontextmanager
async def _channel(amqp_url: str) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        yield channel


def _user(amqp_url: str) -> str:
    return unquote(urlsplit(amqp_url).username or "guest")


async def _take_all(channel: AbstractChannel, queue_name: str) -> list[AbstractIncomingMessage]:
    """Every message on the queue, unacked: whatever is not acked goes back when the
    channel closes, in its order."""
    queue = await channel.get_queue(queue_name, ensure=False)
    taken = []
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        taken.append(message)
    return taken


def _held(queue: str, consumer: Consumer, message: AbstractIncomingMessage) -> HeldMessage:
    headers = dict(message.headers or {})
    try:
        body = json.loads(message.body)
    except (ValueError, RecursionError):
        body = None
    found = saga_id_of(body) if isinstance(body, dict) else None
    kind = message.type or (found[1] if found else None)
    reason = headers.get("saga-last-error") or headers.get("saga-reject-reason") or ""
    held_at = headers.get("saga-parked-at") or headers.get("saga-rejected-at")
    return HeldMessage(
        queue=queue,
        work_queue=consumer.queue,
        message_id=message.message_id,
        saga_id=found[0] if found else None,
        type=str(kind)[:128] if kind else None,
        reason=_text(reason),
        held_at=_text(held_at) if held_at else None,
        attempts=_count(headers.get(ATTEMPT_HEADER)),
        body=message.body,
    )


async def _each_held(
    channel: AbstractChannel, kind: str
) -> AsyncIterator[tuple[AbstractIncomingMessage, HeldMessage, bool]]:
    """Every held message, unacked, with whether it is a copy: a message parked twice (its
    service died between parking it and acking it) is one message, met once already."""
    for name, consumer in holding_queues(kind).items():
        seen: set[str] = set()
        for message in await _take_all(channel, name):
            held = _held(name, consumer, message)
            copy = held.message_id is not None and held.message_id in seen
            if held.message_id is not None:
                seen.add(held.message_id)
            yield message, held, copy


async def list_held(amqp_url: str, kind: str, queue: str | None = None) -> list[HeldMessage]:
    """The parked or dead-lettered messages, left where they are."""
    async with _channel(amqp_url) as channel:
        return [
            held
            async for _, held, copy in _each_held(channel, kind)
            if not copy and (queue is None or queue in (held.queue, held.work_queue))
        ]


async def send_back(
    amqp_url: str,
    kind: str,
    select: Callable[[HeldMessage], bool],
    *,
    discard: bool = False,
) -> list[HeldMessage]:
    """Send the held messages `select` picks back to their work queue, as new first
    attempts (or, with `discard`, drop them). Returns what was done to."""
    done: list[HeldMessage] = []
    operator = _user(amqp_url)
    async with _channel(amqp_url) as channel:
        async for message, held, copy in _each_held(channel, kind):
            if not select(held):
                continue
            # A copy is dropped: the message goes back once.
            if not discard and not copy:
                headers = {k: v for k, v in (message.headers or {}).items() if k != ATTEMPT_HEADER}
                headers["saga-redriven-at"] = datetime.now(UTC).isoformat()
                headers["saga-redriven-from"] = held.queue
                # Back through the service's holding exchange, as the operator: the
                # consumer trusts an operator's message, and only an operator's marks.
                service = held.work_queue.split(".", 1)[0]
                exchange = await channel.get_exchange(holding_exchange(service), ensure=False)
                await exchange.publish(
                    aio_pika.Message(
                        message.body,
                        headers=headers,
                        content_type=message.content_type,
                        message_id=message.message_id,
                        correlation_id=message.correlation_id,
                        type=message.type,
                        user_id=operator,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=held.work_queue,
                    mandatory=True,
                )
            # Acked only once the copy is confirmed: a crash here leaves it parked.
            await message.ack()
            if not copy:
                done.append(held)
    return done


def _count(value: Any) -> int:
    try:
        return max(int(str(value or 0)), 0)
    except ValueError:
        return 0


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
