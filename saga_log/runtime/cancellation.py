"""What every service that takes part in a saga keeps of its cancellation: one row per
cancelled saga (by saga type and id), checked under the saga's lock before a forward step
is applied."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    func,
)
from sqlalchemy.dialects.postgresql import insert

from saga_log.runtime.subscription import Received
from saga_log.runtime.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

M = TypeVar("M")


def add_cancellation_table(metadata: MetaData) -> Table:
    return Table(
        "cancelled_sagas",
        metadata,
        Column("saga_type", String(64), nullable=False),
        Column("saga_id", String(64), nullable=False),
        Column("reason", String(128), nullable=False),
        Column("cancelled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("saga_type", "saga_id"),
    )


async def mark_cancelled(
    uow: UnitOfWork, table: Table, *, saga_type: str, saga_id: str, reason: str
) -> None:
    """Remember the cancellation (call with the saga's lock held)."""
    await uow.connection.execute(
        insert(table)
        .values(saga_type=saga_type, saga_id=saga_id, reason=reason)
        .on_conflict_do_nothing()
    )


async def split_cancelled(
    uow: UnitOfWork, table: Table, batch: Sequence[Received[M]], *, saga_type: str, late: str
) -> tuple[list[Received[M]], list[Received[M]]]:
    """Lock a batch's sagas, then split it into (live, cancelled) messages: a forward step
    applies the live ones only. `late` is logged for each cancelled one."""
    saga_ids = [received.saga_id for received in batch]
    await uow.lock_sagas(saga_ids)
    cancelled = await cancelled_among(uow, table, saga_type=saga_type, saga_ids=saga_ids)
    live: list[Received[M]] = []
    dropped: list[Received[M]] = []
    for received in batch:
        (dropped if received.saga_id in cancelled else live).append(received)
    for received in dropped:
        log.warning(late, extra={"saga_type": saga_type, "saga_id": received.saga_id})
    return live, dropped


async def cancelled_among(
    uow: UnitOfWork, table: Table, *, saga_type: str, saga_ids: Iterable[str]
) -> set[str]:
    """Which of these sagas were cancelled (call with their locks held, so that the answer
    stays true for the rest of the transaction)."""
    # On asyncpg, not SQLAlchemy: every forward step of a participant runs it (unit_of_work).
    rows = await uow.fetch(
        f"SELECT saga_id FROM {table.name} WHERE saga_type = $1 AND saga_id = ANY($2::text[])",
        saga_type,
        sorted(set(saga_ids)),
    )
    return {str(row[0]) for row in rows}


__all__: list[Any] = [
    "add_cancellation_table",
    "cancelled_among",
    "mark_cancelled",
    "split_cancelled",
]
