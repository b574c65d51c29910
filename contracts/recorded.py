"""Any message on `saga.events`, as the saga history reads it: which saga it belongs to
(type and id, from the declarations), the envelope if it has one, and the body as it came
with its secret fields masked."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.envelope import MessageParked, Name, SagaId
from contracts.sagas import MESSAGES_BY_TYPE, SAGA_OF_TYPE, SAGAS, SAGAS_BY_NAME
from contracts.secrets import mask, secret_fields

#: Every field name that is secret in some message of some saga.
SECRET_FIELDS = frozenset(secret_fields([message for saga in SAGAS for message in saga.messages()]))


class SagaMessage(BaseModel):
    """A message of some declared saga, whatever its type (or a runtime event about one).

    A body without a `type` is a saga's starting command, recognised by its saga id field
    (`order_id`, `fareId`); an event names its type. A type no saga declares is invalid.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    routing_key: ClassVar[str] = "#"

    type: Name
    saga_type: Name
    saga_id: SagaId
    message_id: Annotated[str, Field(max_length=255)] | None = None
    causation_id: Annotated[str, Field(max_length=255)] | None = None
    producer: Annotated[str, Field(max_length=64)] | None = None
    occurred_at: datetime | None = None
    #: The body as it came, secret fields masked.
    payload: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _identify(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "payload" in data:
            return data
        kind = data.get("type")
        envelope = {
            key: data.get(key) for key in ("message_id", "causation_id", "producer", "occurred_at")
        }
        starting = {saga.starts_with.type_name(): saga for saga in SAGAS}
        if kind is None or kind in starting:
            # A saga-starting command has no envelope: whatever a client wrote where an
            # envelope would be is not trusted (a chosen message_id could shadow a real
            # event's); it is keyed, as its service keys it, by its type and saga id.
            for saga in SAGAS if kind is None else (starting[kind],):
                if saga.id_field in data:
                    return {
                        "type": saga.starts_with.type_name(),
                        "saga_type": saga.name,
                        "saga_id": data[saga.id_field],
                        "producer": "client",
                        "payload": _plain(mask(data, SECRET_FIELDS)),
                    }
            fields = ", ".join(saga.id_field for saga in SAGAS)
            raise ValueError(f"not a message of any saga: no type and none of {fields}")
        if kind == MessageParked.type_name():
            saga_type = data.get("saga_type")
            if saga_type not in SAGAS_BY_NAME:
                raise ValueError(f"MessageParked for an unknown saga type {saga_type!r}")
        elif isinstance(kind, str) and kind in MESSAGES_BY_TYPE:
            saga_type = SAGA_OF_TYPE[kind].name
        else:
            raise ValueError(f"unknown message type {str(kind)[:128]!r}")
        saga_id = data.get("correlation_id") or data.get(SAGAS_BY_NAME[saga_type].id_field)
        return {
            **envelope,
            "type": kind,
            "saga_type": saga_type,
            "saga_id": saga_id,
            "payload": _plain(mask(data, SECRET_FIELDS)),
        }

    def inbox_key(self) -> str:
        return self.message_id or f"{self.type}:{self.saga_id}"


def _plain(value: Any) -> Any:
    """`value` as JSON can hold it: exact decimals (bodies are read with them) as strings."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
