"""What a participant keeps of a saga's success: one row per saga that succeeded (by saga
type and id), written when the saga's success event reaches it. A compensation, or a
cancellation, checks it under the saga's lock and undoes nothing for such a saga: a saga
that succeeded stays succeeded, whatever arrives late, twice, or forged. (The broker and
the producer check keep forgeries out; this keeps a bug from doing the same harm.)"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, TEXT, insert

from saga_log.runtime.subscription import Received
from saga_log.runtime.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)


def add_succeeded_table(metadata: MetaData) -> Table:
    return Table(
        "succeeded_sagas",
        metadata,
        Column("saga_type", String(64), nullable=False),
        Column("saga_id", String(64), nullable=False),
        Column("succeeded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("saga_type", "saga_id"),
    )


async def mark_succeeded(
    uow: UnitOfWork, table: Table, *, saga_type: str, saga_ids: Iterable[str]
) -> None:
    """Remember that these sagas succeeded (one statement, under their locks)."""
    ids = sorted(set(saga_ids))
    if not ids:
        return
    await uow.lock_sagas(ids)
    await uow.connection.execute(
        insert(table).on_conflict_do_nothing(),
        [{"saga_type": saga_type, "saga_id": saga_id} for saga_id in ids],
    )


async def succeeded(
    uow: UnitOfWork, table: Table, received: Received[Any], *, saga_type: str, undoing: str
) -> bool:
    """Did the saga of `received` succeed, as this service's own view holds? Then the
    caller undoes nothing, and this says so in the log (call with the saga's lock held)."""
    found = await uow.connection.scalar(
        select(func.count()).where(
            table.c.saga_type == saga_type,
            table.c.saga_id == func.any(bindparam("ids", [received.saga_id], type_=ARRAY(TEXT))),
        )
    )
    if found:
        log.warning(
            "compensation for a saga that succeeded: nothing undone",
            extra={
                "saga_type": saga_type,
                "saga_id": received.saga_id,
                "message_id": received.message_id,
                "undoing": undoing,
                "type": type(received.message).__name__,
            },
        )
    return bool(found)


__all__ = ["add_succeeded_table", "mark_succeeded", "succeeded"]
