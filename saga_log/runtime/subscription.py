"""What a service gives the runtime for each of its queues, and what its handlers receive.

One handler shape for one message and for many: a handler is an async function that takes
the unit of work and a batch of received messages, in saga order, and does their work in
that transaction (a single delivery is a batch of one). It publishes only through the unit
of work (the outbox) and never commits: the delivery commits once, with the inbox rows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from contracts import Consumer, Event, InvalidMessage
from saga_log.runtime.unit_of_work import UnitOfWork

M = TypeVar("M")


@dataclass(frozen=True)
class Delivery:
    """What the broker said about a message."""

    routing_key: str
    headers: Mapping[str, Any]
    received_at: datetime
    redelivered: bool = False


@dataclass(frozen=True)
class Received(Generic[M]):
    """A decoded message in hand: the message, its id (the causation id of whatever its
    handler publishes) and how it was delivered."""

    message: M
    message_id: str
    delivery: Delivery

    @property
    def saga_id(self) -> str:
        saga_id: str = self.message.saga_id  # type: ignore[attr-defined]
        return saga_id


Batch = Sequence[Received[M]]
#: A handler: `async def debit_payments(uow, batch) -> None`.
Handler = Callable[[UnitOfWork, Sequence[Received[Any]]], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    """A queue of the topology and the handler that does its work."""

    consumer: Consumer
    handler: Handler
    #: Answers a body that failed validation with an event (e.g. OrderRejected), if it can.
    on_invalid: Callable[[bytes, InvalidMessage], Event | None] | None = None
    #: Never linger, though it publishes nothing: what it writes is read at once by
    #: someone who has just seen the saga move (the order's own view, GET /orders).
    prompt: bool = False


def one_per_saga(batch: Sequence[Received[Any]]) -> bool:
    """Does each saga appear once in `batch`? A handler that works set-wise can rely on it
    only then; otherwise one saga's messages must be applied one after the other
    (`one_by_one`)."""
    return len({received.saga_id for received in batch}) == len(batch)


async def one_by_one(
    uow: UnitOfWork,
    batch: Sequence[Received[M]],
    handle: Callable[[UnitOfWork, Received[M]], Awaitable[None]],
) -> None:
    """Apply `handle` to each message of `batch` in turn: for work that cannot be done
    set-wise, the same effect as a delivery per message, in this one transaction."""
    for received in batch:
        await handle(uow, received)
