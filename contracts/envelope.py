"""What every message of every saga is: a command that starts a saga (as a client types it,
no envelope) or an event (a fact in the past tense, with the envelope below).

Events carry the envelope of `Event`: a `message_id` derived from the message that caused
it (a retried handler emits the same id again), the saga id as `correlation_id`, the
`causation_id`, its `type`, the producing service, when it happened and a
`schema_version`. Each saga's messages add the saga's own id field (`order_id`, `fareId`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

#: Namespace of every id we derive (transaction ids and message ids), from the order sample.
NAMESPACE = uuid.UUID("8b03bc51-6db8-4d24-9e5b-0f8245f5f42e")

SCHEMA_VERSION = 1

#: A saga id as it travels: short, printable, safe in a routing key, a log line or a URL.
SAGA_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
SagaId = Annotated[str, Field(min_length=1, max_length=64, pattern=SAGA_ID_PATTERN)]
#: Free text that ends up in a database column or a log line: always bounded.
Text = Annotated[str, Field(max_length=2000)]
Name = Annotated[str, Field(max_length=128)]


def derived_id(*parts: str) -> uuid.UUID:
    """A UUIDv5 of `parts` under NAMESPACE: the same inputs give the same id, so a retried
    write or a re-emitted event overwrites itself."""
    return uuid.uuid5(NAMESPACE, "|".join(parts))


class Secret:
    """Marks a field whose value must never be stored, logged or shown in clear
    (`Annotated[str, Secret()]`). See `contracts.secrets`."""

    def __repr__(self) -> str:
        return "Secret()"


class Command(BaseModel):
    """The message that starts a saga, exactly as a client publishes it: no envelope, so
    that it can be typed by hand into the RabbitMQ management UI. Read tolerantly (unknown
    fields are ignored)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    routing_key: ClassVar[str]
    #: The field that names the saga (the same one twice is one saga).
    saga_id_field: ClassVar[str]

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__

    @property
    def saga_id(self) -> str:
        value: str = getattr(self, self.saga_id_field)
        return value

    def inbox_key(self) -> str:
        # No envelope, and a client may give each publish a new id: the saga id is what
        # must not be handled twice.
        return f"{self.type_name()}:{self.saga_id}"


class Event(BaseModel):
    """The envelope every published event carries.

    Published events are frozen and forbid unknown fields; consumers read them tolerantly
    (`contracts.decode`). Build them with `caused_by`, which fills the envelope.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    routing_key: ClassVar[str]
    #: The payload field that repeats the saga id, for readers of one saga's events.
    saga_id_field: ClassVar[str] = "correlation_id"

    type: str
    message_id: uuid.UUID
    #: The saga id.
    correlation_id: SagaId
    causation_id: Annotated[str, Field(max_length=255)]
    producer: Name
    occurred_at: datetime
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def type_name(cls) -> str:
        name: str = cls.model_fields["type"].default
        return name

    @property
    def saga_id(self) -> str:
        return self.correlation_id

    def route(self) -> str:
        """The routing key this event is published with."""
        return self.routing_key

    def inbox_key(self) -> str:
        return str(self.message_id)

    @classmethod
    def caused_by(cls, causation_id: str, *, producer: str, **fields: Any) -> Self:
        """The event that the message `causation_id` caused; the same cause gives the same
        id. The saga id comes as `saga_id=` or as the saga's own id field (`order_id=`)."""
        type_name = cls.type_name()
        saga_id = fields.pop("saga_id", None)
        if saga_id is None:
            saga_id = fields[cls.saga_id_field]
        elif cls.saga_id_field != "correlation_id":
            fields[cls.saga_id_field] = saga_id
        return cls(
            type=type_name,
            message_id=derived_id(causation_id, type_name),
            correlation_id=saga_id,
            causation_id=causation_id,
            producer=producer,
            occurred_at=datetime.now(UTC),
            **fields,
        )


class CompensationFailed(Event):
    """A compensation failed: the chain stops here and a human must look (the samples'
    "failed" notification, naming the error). Each compensation step has its own event of
    this shape, produced by its service only; the runtime parks the message that caused it
    and publishes it itself when a compensation's retries are spent."""

    step: Name
    error: Text
    cause: Text
    transaction_id: Annotated[str, Field(max_length=64)] | None = None
    attempts: int = 1


class MessageParked(Event):
    """A message's retry budget is spent: it waits on `queue`.parked for an operator.

    Published by the runtime of any service straight away (not through the outbox: the
    database may be why the message could not be handled), with the routing key
    `<service>.message_parked`."""

    routing_key: ClassVar[str] = "saga.message_parked"
    type: Literal["MessageParked"] = "MessageParked"
    saga_type: Name
    queue: Name
    step: Name | None
    parked_type: Name | None
    parked_message_id: Annotated[str, Field(max_length=255)] | None
    error: Text
    attempts: int

    def route(self) -> str:
        return f"{self.producer}.message_parked"
