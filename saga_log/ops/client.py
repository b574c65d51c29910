"""A client of the sagas, for people and tests: start a saga, watch its events arrive,
wait for its terminal event. Talks to RabbitMQ only, as any client would."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from types import TracebackType
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from contracts import EXCHANGE, ORDER, SAGAS, TERMINAL_EVENTS, Saga
from contracts.access import WATCH_QUEUE_PREFIX

TERMINAL_TYPES = {event.type_name() for event in TERMINAL_EVENTS}


def saga_id_of(body: dict[str, Any]) -> tuple[str, str] | None:
    """(saga id, type) of a message body of any saga, or None if it is none of theirs."""
    if "type" in body and isinstance(body.get("correlation_id"), str):
        return body["correlation_id"], str(body["type"])
    for saga in SAGAS:
        if isinstance(body.get(saga.id_field), str):
            return body[saga.id_field], str(body.get("type") or saga.starts_with.type_name())
    return None


class SagaWatcher:
    """Watches every event on `saga.events` through a private, self-deleting queue.

    Use as `async with SagaWatcher(url) as watcher:`; `start` publishes a saga's starting
    command (its JSON, no envelope) and `wait` returns the saga's events up to its terminal
    one.
    """

    def __init__(self, amqp_url: str) -> None:
        self._url = amqp_url
        self._events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._changed = asyncio.Condition()
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def __aenter__(self) -> SagaWatcher:
        self._connection = await aio_pika.connect_robust(self._url)
        channel = await self._connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=500)
        # Looked up, not declared: a client may not configure the exchange.
        self._exchange = await channel.get_exchange(EXCHANGE, ensure=True)
        queue = await channel.declare_queue(
            f"{WATCH_QUEUE_PREFIX}{uuid.uuid4().hex}", exclusive=True, auto_delete=True
        )
        await queue.bind(self._exchange, routing_key="#")
        await queue.consume(self._on_message, no_ack=True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            body = json.loads(message.body)
        except (ValueError, RecursionError):
            return
        found = saga_id_of(body) if isinstance(body, dict) else None
        if found is None:
            return
        saga_id, kind = found
        body = {**body, "type": kind, "routing_key": message.routing_key}
        async with self._changed:
            self._events[saga_id].append(body)
            self._changed.notify_all()

    async def start(
        self, saga: Saga, payload: dict[str, Any], *, message_id: str | None = None
    ) -> None:
        """Publish `payload` as a client starts `saga`: persistent, confirmed, with the
        starting command's routing key."""
        assert self._exchange is not None, "use SagaWatcher in `async with`"
        await self._exchange.publish(
            aio_pika.Message(
                json.dumps(payload).encode(),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/json",
                message_id=message_id,
            ),
            routing_key=saga.starts_with.routing_key,
            mandatory=True,
        )

    async def place(self, order: dict[str, Any], *, message_id: str | None = None) -> None:
        """Place an order (the order saga's starting command)."""
        await self.start(ORDER, order, message_id=message_id)

    def events(self, saga_id: str) -> list[dict[str, Any]]:
        return list(self._events.get(saga_id, ()))

    async def wait(self, saga_id: str, *, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The saga's events up to and including its terminal one; TimeoutError if it has
        none after `timeout` seconds (the events seen so far are in `events(saga_id)`)."""

        def concluded() -> bool:
            return any(event["type"] in TERMINAL_TYPES for event in self._events.get(saga_id, ()))

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(concluded), timeout)
        return self.events(saga_id)
