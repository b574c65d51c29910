"""The recorder's handler: keep each event, then re-derive its saga's state, for a whole
batch in a few statements."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime
from typing import Any

from contracts import SagaMessage
from saga_log.recorder.state import STATE_FIELDS, derive
from saga_log.recorder.tables import saga_events, sagas
from saga_log.runtime import Batch, Received, UnitOfWork


async def record_event(uow: UnitOfWork, batch: Batch[SagaMessage]) -> None:
    """Store each event as it came (secret fields masked) and each saga's state as all its
    events now say, whatever order they came in: one insert of the batch's events, one
    read of its sagas' events, one upsert of their states. Never publishes: the history
    watches the sagas, it takes no part in them."""
    if not batch:
        return
    sagas_in_batch = sorted({(r.message.saga_type, r.message.saga_id) for r in batch})
    saga_ids = sorted({saga_id for _, saga_id in sagas_in_batch})
    # Serialise per saga: two of its events recorded at once must not each derive the
    # state from a history that lacks the other.
    await uow.lock_sagas(saga_ids)
    # Straight on asyncpg, one statement each whatever the batch's size (UnitOfWork.insert):
    # through SQLAlchemy, each event and each saga was a statement of its own.
    await uow.insert(saga_events, [_event_row(r) for r in batch])
    events = await _events_of(uow, saga_ids)
    await uow.insert(
        sagas,
        [_state_row(kind, saga_id, events[(kind, saga_id)]) for kind, saga_id in sagas_in_batch],
        update_on_conflict=_STATE_COLUMNS,
    )


async def _events_of(
    uow: UnitOfWork, saga_ids: list[str]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    # Only the payload fields the state is derived from, as text: decoding every stored
    # payload of every saga in the batch was a fifth of the history's CPU.
    rows = await uow.fetch(_EVENTS_OF, saga_ids)
    events: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for values in rows:
        events[(values["saga_type"], values["saga_id"])].append(
            {
                "type": values["type"],
                "occurred_at": values["occurred_at"],
                "received_at": values["received_at"],
                "payload": {f: values[f] for f in STATE_FIELDS if values[f] is not None},
            }
        )
    return events


# The state's fields are names of ours (recorder.state), never input.
_EVENTS_OF = (
    "SELECT saga_type, saga_id, type, occurred_at, received_at, "
    + ", ".join(f"payload->>'{field}' AS {field}" for field in STATE_FIELDS)
    + " FROM saga_events WHERE saga_id = ANY($1::text[])"
)

_STATE_COLUMNS = (
    "status",
    "current_step",
    "started_at",
    "last_event_at",
    "ended_at",
    "cause",
    "attention",
    "event_count",
    "state",
)


def _event_row(received: Received[SagaMessage]) -> dict[str, Any]:
    message, delivery = received.message, received.delivery
    return dict(
        message_id=received.message_id,
        saga_type=message.saga_type,
        saga_id=message.saga_id,
        causation_id=message.causation_id,
        type=message.type,
        producer=message.producer,
        routing_key=delivery.routing_key,
        occurred_at=message.occurred_at,
        received_at=delivery.received_at,
        payload=message.payload,
        headers=_jsonable_headers(delivery.headers),
    )


def _state_row(saga_type: str, saga_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    state = derive(saga_type, saga_id, events)
    return dict(
        saga_type=saga_type,
        saga_id=saga_id,
        status=state.status,
        current_step=state.current_step,
        started_at=state.started_at,
        last_event_at=state.last_event_at,
        ended_at=state.ended_at,
        cause=state.cause,
        attention=state.attention,
        event_count=state.event_count,
        state=state.as_json(),
    )


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _jsonable_headers(headers: Any) -> dict[str, Any]:
    """The headers as the history keeps them: what JSONB can hold, bounded. A client
    writes headers too: nested tables, bytes, NULs and lone surrogates must not make the
    history fail (and retry) on every message that carries them."""
    result: dict[str, Any] = {}
    for key, value in list(dict(headers or {}).items())[:50]:
        result[_storable(str(key))[:128]] = _header_value(value)
    return result


def _header_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    elif isinstance(value, datetime):
        value = value.isoformat()
    elif not isinstance(value, str):
        return f"<{type(value).__name__}>"  # a nested table or array: not kept
    return _storable(value)[:2000]


def _storable(text: str) -> str:
    return _UNSTORABLE.sub("\ufffd", text)


__all__ = ["record_event"]
