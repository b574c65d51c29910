"""The recorder's one handler: keep the event, then re-derive its saga's state."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from contracts import SagaMessage
from saga_log.db import UnitOfWork
from saga_log.recorder.state import derive
from saga_log.recorder.tables import saga_events, sagas


async def record_event(uow: UnitOfWork, message: SagaMessage, message_id: str) -> None:
    """Store the event as it came and the saga's state as its events now say. Never
    publishes: the history watches the saga, it takes no part in it."""
    delivery = uow.delivery
    received_at = delivery.received_at if delivery else datetime.now(UTC)
    payload = message.model_dump(mode="json")
    # Serialise per saga: two of its events recorded at once must not each derive the
    # state from a history that lacks the other.
    await uow.lock_saga(message.order_id)
    await uow.connection.execute(
        insert(saga_events)
        .values(
            message_id=message_id,
            saga_id=message.order_id,
            causation_id=message.causation_id,
            type=message.type,
            producer=message.producer or ("client" if message.type == "PlaceOrder" else None),
            routing_key=delivery.routing_key if delivery else None,
            occurred_at=message.occurred_at,
            received_at=received_at,
            payload=payload,
            headers=_jsonable_headers(delivery.headers if delivery else {}),
        )
        .on_conflict_do_nothing()
    )
    rows = (
        await uow.connection.execute(
            select(
                saga_events.c.type,
                saga_events.c.payload,
                saga_events.c.occurred_at,
                saga_events.c.received_at,
            ).where(saga_events.c.saga_id == message.order_id)
        )
    ).all()
    state = derive(message.order_id, [dict(row._mapping) for row in rows])
    values = dict(
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
    await uow.connection.execute(
        insert(sagas)
        .values(saga_id=message.order_id, **values)
        .on_conflict_do_update(index_elements=[sagas.c.saga_id], set_=values)
    )


def _jsonable_headers(headers: Any) -> dict[str, Any]:
    # AMQP headers may hold bytes and datetimes; the history keeps what JSON can say.
    result: dict[str, Any] = json.loads(json.dumps(dict(headers), default=str))
    return result


__all__ = ["record_event"]
