"""The recorder's handler: keep the event, then re-derive its saga's state (one message at
a time, or a batch in a few statements)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY, TEXT, insert

from contracts import SagaMessage
from saga_log.db import Delivery, UnitOfWork
from saga_log.recorder.state import STATE_FIELDS, derive
from saga_log.recorder.tables import saga_events, sagas


async def record_event(uow: UnitOfWork, message: SagaMessage, message_id: str) -> None:
    """Store the event as it came and the saga's state as its events now say. Never
    publishes: the history watches the saga, it takes no part in it."""
    await record_events(uow, [(message, message_id, uow.delivery)])


async def record_events(
    uow: UnitOfWork, batch: Sequence[tuple[SagaMessage, str, Delivery | None]]
) -> None:
    """`record_event` for a batch: one insert of all its events, one read of its sagas'
    events, one upsert of their states. Each saga's state is derived from all its events,
    whatever order they came in."""
    if not batch:
        return
    saga_ids = sorted({message.order_id for message, _, _ in batch})
    # Serialise per saga: two of its events recorded at once must not each derive the
    # state from a history that lacks the other.
    await uow.lock_sagas(saga_ids)
    await uow.connection.execute(
        insert(saga_events).on_conflict_do_nothing(),
        [_event_row(message, message_id, delivery) for message, message_id, delivery in batch],
    )
    # Only the payload fields the state is derived from, as text: decoding every stored
    # payload of every saga in the batch was a fifth of the history's CPU.
    rows = (
        await uow.connection.execute(
            select(
                saga_events.c.saga_id,
                saga_events.c.type,
                saga_events.c.occurred_at,
                saga_events.c.received_at,
                *(saga_events.c.payload[field].astext.label(field) for field in STATE_FIELDS),
            ).where(saga_events.c.saga_id == func.any(bindparam("ids", type_=ARRAY(TEXT)))),
            {"ids": saga_ids},
        )
    ).all()
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        values = row._mapping
        events[values["saga_id"]].append(
            {
                "type": values["type"],
                "occurred_at": values["occurred_at"],
                "received_at": values["received_at"],
                "payload": {f: values[f] for f in STATE_FIELDS if values[f] is not None},
            }
        )
    states = [_state_row(saga_id, events[saga_id]) for saga_id in saga_ids]
    statement = insert(sagas)
    await uow.connection.execute(
        statement.on_conflict_do_update(
            index_elements=[sagas.c.saga_id],
            set_={name: statement.excluded[name] for name in _STATE_COLUMNS},
        ),
        states,
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


def _event_row(message: SagaMessage, message_id: str, delivery: Delivery | None) -> dict[str, Any]:
    return dict(
        message_id=message_id,
        saga_id=message.order_id,
        causation_id=message.causation_id,
        type=message.type,
        producer=message.producer or ("client" if message.type == "PlaceOrder" else None),
        routing_key=delivery.routing_key if delivery else None,
        occurred_at=message.occurred_at,
        received_at=delivery.received_at if delivery else datetime.now(UTC),
        payload=message.model_dump(mode="json"),
        headers=_jsonable_headers(delivery.headers if delivery else {}),
    )


def _state_row(saga_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    state = derive(saga_id, events)
    return dict(
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


def _jsonable_headers(headers: Any) -> dict[str, Any]:
    # AMQP headers may hold bytes and datetimes; the history keeps what JSON can say.
    result: dict[str, Any] = json.loads(json.dumps(dict(headers), default=str))
    return result


__all__ = ["record_event", "record_events"]
