"""What every service that takes part in a saga keeps of its cancellation: one row per
cancelled saga, checked under the saga's lock before a forward step is applied."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, TEXT, insert

from saga_log.db import UnitOfWork

log = logging.getLogger(__name__)


def add_cancellation_table(metadata: MetaData) -> Table:
    return Table(
        "cancelled_sagas",
        metadata,
        Column("order_id", String(64), primary_key=True),
        Column("reason", String(128), nullable=False),
        Column("cancelled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


async def mark_cancelled(uow: UnitOfWork, table: Table, order_id: str, reason: str) -> None:
    """Remember the cancellation (call with the saga's lock held)."""
    await uow.connection.execute(
        insert(table).values(order_id=order_id, reason=reason).on_conflict_do_nothing()
    )


async def split_cancelled(
    uow: UnitOfWork, table: Table, batch: Sequence[tuple[Any, str, Any]], *, late: str
) -> tuple[list[tuple[Any, str, Any]], list[tuple[Any, str, Any]]]:
    """Lock a batch's sagas, then split it into (live, cancelled) messages: a forward step
    applies the live ones only. `late` is logged for each cancelled one."""
    order_ids = [message.order_id for message, _, _ in batch]
    await uow.lock_sagas(order_ids)
    cancelled = await cancelled_among(uow, table, order_ids)
    live: list[tuple[Any, str, Any]] = []
    dropped: list[tuple[Any, str, Any]] = []
    for item in batch:
        (dropped if item[0].order_id in cancelled else live).append(item)
    for message, _, _ in dropped:
        log.warning(late, extra={"order_id": message.order_id})
    return live, dropped


async def cancelled_among(uow: UnitOfWork, table: Table, order_ids: Iterable[str]) -> set[str]:
    """Which of these sagas were cancelled (call with their locks held, so that the answer
    stays true for the rest of the transaction)."""
    rows = await uow.connection.execute(
        select(table.c.order_id).where(
            table.c.order_id == func.any(bindparam("ids", list(set(order_ids)), type_=ARRAY(TEXT)))
        )
    )
    return {str(row[0]) for row in rows}
