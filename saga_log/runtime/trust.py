"""Who sent a message, and whether that sender may move a saga.

The broker makes a message's AMQP `user_id` the publishing connection's user or refuses
the publish, and `contracts.access` lets each service publish only the routing keys of its
own events. A consumer then checks each message's sender against the producer the saga
declarations name for its type: the service's broker user for an event, a client user (or
no `user_id`, as the management UI's form sends none) for a saga-starting command, and the
operator user for anything redriven or replayed. Anything else is dead-lettered with the
reason `unexpected producer <user> for <type>`, before any database is touched.

A copy that this service's own runtime made (a retry going round its delay queue) carries
the service's own `user_id` and, in `saga-origin-user`, who sent the original: that
header, like the attempt count and the redrive marks, counts only when the message comes
from this service's runtime or from an operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from contracts import CLIENT, InvalidMessage, MessageParked
from contracts.access import OPERATOR, services
from contracts.sagas import SAGAS_BY_NAME, producer_of

ORIGIN_HEADER = "saga-origin-user"


class Untrusted(InvalidMessage):
    """A message whose sender is not its type's declared producer: dead-lettered, never
    answered (unlike a body that fails validation)."""


@dataclass(frozen=True)
class Trust:
    """This service's broker user, and the prefix every broker user's name carries."""

    own: str
    prefix: str = ""

    @property
    def operator(self) -> str:
        return f"{self.prefix}{OPERATOR}"

    @property
    def client(self) -> str:
        return f"{self.prefix}{CLIENT}"

    def from_runtime(self, raw: AbstractIncomingMessage) -> bool:
        """Did this service's own runtime publish this copy (a retry)?"""
        return _text(raw.user_id) == self.own

    def from_operator(self, raw: AbstractIncomingMessage) -> bool:
        return _text(raw.user_id) == self.operator

    def sender(self, raw: AbstractIncomingMessage) -> str | None:
        """Who published the message: its `user_id`, or for a copy this service's runtime
        made, the sender of the original it recorded."""
        headers = raw.headers or {}
        if self.from_runtime(raw) and ORIGIN_HEADER in headers:
            return _text(headers[ORIGIN_HEADER]) or None
        return _text(raw.user_id) or None

    def check(self, raw: AbstractIncomingMessage, message: Any) -> None:
        """Raise `Untrusted` unless `message` comes from its declared producer (or an
        operator)."""
        sender = self.sender(raw)
        kind = _type_name(message)
        allowed = self._allowed(kind, message)
        if sender == self.operator:
            # Redriven or replayed. A message a runtime held records who sent it first: an
            # operator sending back what was dead-lettered for its sender does not make
            # that sender rightful. (What the operator writes itself is trusted.)
            headers = raw.headers or {}
            if self.from_operator(raw) and ORIGIN_HEADER in headers:
                origin = _text(headers[ORIGIN_HEADER]) or None
                if origin != self.operator and origin not in allowed:
                    raise Untrusted(
                        f"unexpected producer {origin or 'none'} for {kind} "
                        f"(sent back by {self.operator})"
                    )
            return
        if sender not in allowed:
            raise Untrusted(f"unexpected producer {sender or 'none'} for {kind}")

    def _allowed(self, kind: str, message: Any) -> set[str | None]:
        producer = getattr(message, "producer", None)
        if kind == MessageParked.type_name():
            # The runtime of a saga's participant announces what it parked of its own
            # queues, as itself.
            saga = SAGAS_BY_NAME.get(str(getattr(message, "saga_type", "")))
            # The history reads it as any saga message (contracts.recorded): its queue is
            # then in the payload, not an attribute.
            payload = getattr(message, "payload", None)
            queue = str(
                getattr(message, "queue", None)
                or (payload.get("queue") if isinstance(payload, dict) else None)
                or ""
            )
            takes_part = saga is not None and producer in {p.name for p in saga.participants}
            if takes_part and producer in services() and queue.startswith(f"{producer}."):
                return {f"{self.prefix}{producer}"}
            return set()
        declared = producer_of(kind)
        if declared is None:
            return set()
        if declared == CLIENT:
            return {None, self.client}
        if producer not in (None, declared):
            return set()  # the envelope names another producer than the declarations
        return {f"{self.prefix}{declared}"}


def _type_name(message: Any) -> str:
    kind = getattr(message, "type", None)
    if isinstance(kind, str):
        return kind
    name: str = type(message).type_name()
    return name


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)
