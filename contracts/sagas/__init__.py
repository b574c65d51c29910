"""Every saga of the project, each declared once in a module of its own."""

from __future__ import annotations

from contracts.declaration import Message, Saga
from contracts.sagas.fare import FARE
from contracts.sagas.order import ORDER

#: The sagas this project runs. A new saga is declared in a module beside these and added
#: here (docs/writing-a-saga.md).
SAGAS: tuple[Saga, ...] = (ORDER, FARE)

SAGAS_BY_NAME: dict[str, Saga] = {saga.name: saga for saga in SAGAS}

#: Every message type of every saga by its type name, and the saga it belongs to.
MESSAGES_BY_TYPE: dict[str, Message] = {
    message.type_name(): message for saga in SAGAS for message in saga.messages()
}
SAGA_OF_TYPE: dict[str, Saga] = {
    message.type_name(): saga for saga in SAGAS for message in saga.messages()
}


def producer_of(type_name: str) -> str | None:
    """The one participant that publishes messages of type `type_name` (`client` for a
    starting command), or None if no saga declares the type."""
    saga = SAGA_OF_TYPE.get(type_name)
    return saga.producer(MESSAGES_BY_TYPE[type_name]) if saga is not None else None


def saga_named(name: str) -> Saga:
    try:
        return SAGAS_BY_NAME[name]
    except KeyError:
        known = ", ".join(SAGAS_BY_NAME)
        raise KeyError(f"no saga {name!r}; the declared sagas are {known}") from None


__all__ = [
    "MESSAGES_BY_TYPE",
    "SAGAS",
    "SAGAS_BY_NAME",
    "SAGA_OF_TYPE",
    "producer_of",
    "saga_named",
]
