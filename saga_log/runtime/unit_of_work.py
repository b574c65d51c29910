"""The unit of work: one local transaction of a service, with its outbox and inbox."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from sqlalchemy import Table, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, TEXT
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from contracts import EXCHANGE, Event, encode
from saga_log.runtime import tracing

log = logging.getLogger(__name__)


class UndeclaredEvent(RuntimeError):
    """A handler published an event its saga declaration does not let it publish: a bug,
    caught in the tests that run the handler (contracts.sagas says who produces what)."""


class UnitOfWork:
    """One local transaction: rolls back unless `commit` is called.

    Events given to `publish` are written to the outbox in the same transaction, and the
    relay is woken once the transaction has committed (never before: an event leaves the
    service if and only if its state change is durable).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        outbox: Table,
        inbox: Table,
        on_commit: Callable[[Sequence[Mapping[str, Any]]], None],
        may_publish: Iterable[type[Event]] | None = None,
    ) -> None:
        self._engine = engine
        self._outbox = outbox
        self._inbox = inbox
        self._on_commit = on_commit
        self._may_publish = frozenset(may_publish) if may_publish is not None else None
        self._pending: list[Event] = []
        #: The W3C trace context of each message handled here, by message id: an event it
        #: causes carries it in its outbox row (empty when tracing is off).
        self.trace_context: dict[str, Mapping[str, str]] = {}
        self._connection: AsyncConnection | None = None
        self._transaction: AsyncTransaction | None = None
        self.committed = False

    @property
    def connection(self) -> AsyncConnection:
        if self._connection is None:
            raise RuntimeError("the unit of work is used outside its `async with` block")
        return self._connection

    async def __aenter__(self) -> UnitOfWork:
        self._connection = await self._engine.connect()
        self._transaction = await self._connection.begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._connection is not None
        try:
            if not self.committed and self._transaction is not None:
                await self._transaction.rollback()
        finally:
            await self._connection.close()
            self._connection = None

    async def claim(self, consumer: str, message_id: str, message_type: str) -> bool:
        """Record that `consumer` handles `message_id`; False if it already has.

        One round trip, no look-up: the primary key does the deciding, so two deliveries
        racing in two processes cannot both pass.
        """
        statement = (
            pg_insert(self._inbox)
            .values(consumer=consumer, message_id=message_id, message_type=message_type)
            .on_conflict_do_nothing()
            .returning(self._inbox.c.consumer)
        )
        result = await self.connection.execute(statement)
        return result.first() is not None

    async def claim_many(self, consumer: str, messages: Sequence[tuple[str, str]]) -> set[str]:
        """`claim` for many (message_id, message_type) pairs in one statement; returns the
        ids claimed now. An id given twice is claimed once."""
        unique = dict(messages)
        if not unique:
            return set()
        # Arrays, not a multi-row VALUES: one SQL text whatever the batch size, so one
        # prepared statement per connection instead of one per size.
        result = await self.connection.execute(
            _claim_many_statement(self._inbox.name),
            {
                "consumer": consumer,
                "ids": list(unique),
                "types": list(unique.values()),
            },
        )
        return {str(row[0]) for row in result}

    async def lock_saga(self, saga_id: str) -> None:
        """Hold the saga's lock until this transaction ends: handlers of one saga that run
        at the same moment, in any process, run one after the other (a cancellation and a
        late event cannot both miss each other)."""
        await self.connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:saga_id))"), {"saga_id": saga_id}
        )

    async def lock_sagas(self, saga_ids: Iterable[str]) -> None:
        """`lock_saga` for many sagas in one statement, always in the same (sorted) order, so
        that two transactions locking overlapping sets never wait for each other in a cycle."""
        ids = list(set(saga_ids))
        if ids:
            await self.connection.execute(_LOCK_SAGAS, {"ids": ids})  # it sorts them

    def restrict(self, events: Iterable[type[Event]]) -> None:
        """From now on publish only `events` (a delivery narrows its service's events to
        those its queue's step or reaction declares)."""
        allowed = frozenset(events)
        self._may_publish = allowed if self._may_publish is None else self._may_publish & allowed

    def publish(self, *events: Event) -> None:
        """Queue `events` for the outbox; they are written at `commit`. An event this unit
        of work may not publish raises `UndeclaredEvent` here, where the handler is."""
        if self._may_publish is not None:
            for event in events:
                if type(event) not in self._may_publish:
                    allowed = ", ".join(sorted(e.type_name() for e in self._may_publish))
                    raise UndeclaredEvent(
                        f"{event.type_name()} is not declared here (may publish: {allowed})"
                    )
        self._pending.extend(events)

    @property
    def pending(self) -> Sequence[Event]:
        return tuple(self._pending)

    async def commit(self) -> None:
        assert self._transaction is not None
        ambient = tracing.current_carrier()
        rows = [
            _outbox_row(event, self.trace_context.get(event.causation_id, ambient))
            for event in self._pending
        ]
        if rows:
            # Message ids are derived from the cause: a row already there is this very event,
            # written by an earlier attempt whose message came back (e.g. a crash before the
            # ack of a parked compensation). Writing it once is the point.
            await self.connection.execute(
                pg_insert(self._outbox).on_conflict_do_nothing(index_elements=["message_id"]),
                rows,
            )
        await self._transaction.commit()
        self.committed = True
        if rows:
            self._on_commit(rows)


@functools.cache
def _claim_many_statement(inbox: str) -> TextClause:
    return text(
        f"INSERT INTO {inbox} (consumer, message_id, message_type) "
        "SELECT CAST(:consumer AS text), claimed.id, claimed.type "
        "FROM unnest(:ids, :types) AS claimed(id, type) "
        "ON CONFLICT DO NOTHING RETURNING message_id"
    ).bindparams(bindparam("ids", type_=ARRAY(TEXT)), bindparam("types", type_=ARRAY(TEXT)))


# COLLATE "C": the order Python sorts a batch in (code points), whatever the database's
# collation, so that every transaction takes overlapping locks in one order.
_LOCK_SAGAS = text(
    "SELECT pg_advisory_xact_lock(hashtext(id))"
    ' FROM (SELECT id FROM unnest(:ids) AS t(id) ORDER BY id COLLATE "C") AS ids'
).bindparams(bindparam("ids", type_=ARRAY(TEXT)))


def _outbox_row(event: Event, trace: Mapping[str, str]) -> dict[str, Any]:
    return {
        "message_id": event.message_id,
        "exchange": EXCHANGE,
        "routing_key": event.route(),
        "message_type": event.type,
        "correlation_id": event.correlation_id,
        "headers": {
            "causation_id": event.causation_id,
            "schema_version": event.schema_version,
            "producer": event.producer,
            **trace,
        },
        "body": encode(event),
        "created_at": event.occurred_at,
    }
