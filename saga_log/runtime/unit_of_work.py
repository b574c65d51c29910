"""The unit of work: one local transaction of a service, with its outbox and inbox.

The runtime's own statements (claim and lock, outbox insert, BEGIN and COMMIT) run on the
asyncpg connection beneath SQLAlchemy's: they are the same on every hop, and SQLAlchemy's
layer cost more than the round trip itself (about 230 against 90 microseconds a statement,
`docs/performance.md`). Handlers keep SQLAlchemy Core on `connection`, in the same
transaction: the transaction is asyncpg's, and SQLAlchemy's side of the connection is in
autocommit, so that it neither begins nor commits one of its own.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts import EXCHANGE, Event, encode
from saga_log.runtime import tracing
from saga_log.runtime.database import driver_of

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
        self._driver: Any = None  # the asyncpg connection beneath `_connection`
        self._transaction: Any = None  # asyncpg's Transaction
        self._locked: set[str] = set()
        self.committed = False

    @property
    def connection(self) -> AsyncConnection:
        if self._connection is None:
            raise RuntimeError("the unit of work is used outside its `async with` block")
        return self._connection

    async def __aenter__(self) -> UnitOfWork:
        for _ in range(_DEAD_CONNECTIONS_SKIPPED):
            connection = await self._engine.connect()
            try:
                # No round trip: the adapter only stops issuing BEGIN and COMMIT itself.
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                self._driver = await driver_of(connection)
                if self._driver.is_closed():
                    # PostgreSQL ended it while it waited in the pool (a restart, a
                    # terminated backend) and asyncpg knows it already: another, rather
                    # than failing this unit of work on it and spending a retry of the
                    # message (a whole pool of them once parked a message of a saga).
                    await _discard(connection)
                    continue
                self._transaction = self._driver.transaction()
                await self._transaction.start()
            except BaseException:
                await _discard(connection)
                raise
            self._connection = connection
            return self
        raise RuntimeError(
            f"the connection pool handed out {_DEAD_CONNECTIONS_SKIPPED} closed connections "
            "in a row"
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection = self._connection
        assert connection is not None
        self._connection = None
        if self.committed:
            await connection.close()
            return
        try:
            await self._transaction.rollback()
        except Exception:
            # The connection is broken: never hand it back to the pool with a transaction
            # open. If the work itself failed (a commit that never came back, say), that
            # error says more than the rollback's.
            await _discard(connection)
            if exc is None:
                raise
            return
        except BaseException:  # cancelled mid-rollback
            await _discard(connection)
            raise
        await connection.close()

    async def claim(self, consumer: str, message_id: str, message_type: str) -> bool:
        """Record that `consumer` handles `message_id`; False if it already has.

        One round trip, no look-up: the primary key does the deciding, so two deliveries
        racing in two processes cannot both pass.
        """
        return bool(await self.claim_many(consumer, [(message_id, message_type)]))

    async def claim_many(
        self,
        consumer: str,
        messages: Sequence[tuple[str, str]],
        *,
        saga_ids: Iterable[str] = (),
    ) -> set[str]:
        """`claim` for many (message_id, message_type) pairs in one statement; returns the
        ids claimed now. An id given twice is claimed once. `saga_ids` are locked first
        (`lock_sagas`), in the same round trip: a duplicate delivered to another replica
        at the same moment waits for this transaction, then finds its key taken."""
        unique = dict(messages)
        if not unique:
            return set()
        sagas = sorted(set(saga_ids) - self._locked)
        self.connection  # noqa: B018 (inside the `async with` block, or say so)
        # Arrays, not a multi-row VALUES: one SQL text whatever the batch size, so one
        # prepared statement per connection instead of one per size.
        rows = await self._driver.fetch(
            _claim_statement(self._inbox.name), consumer, list(unique), list(unique.values()), sagas
        )
        self._locked.update(sagas)
        return {row[0] for row in rows}

    async def lock_saga(self, saga_id: str) -> None:
        """Hold the saga's lock until this transaction ends: handlers of one saga that run
        at the same moment, in any process, run one after the other (a cancellation and a
        late event cannot both miss each other)."""
        await self.lock_sagas([saga_id])

    async def lock_sagas(self, saga_ids: Iterable[str]) -> None:
        """`lock_saga` for many sagas in one statement, always in the same (sorted) order, so
        that two transactions locking overlapping sets never wait for each other in a cycle."""
        ids = sorted(set(saga_ids) - self._locked)  # a lock held is held to the end
        if ids:
            self.connection  # noqa: B018
            await self._driver.execute(_LOCK_SAGAS, ids)  # it sorts them, as Python does
            self._locked.update(ids)

    async def now(self) -> datetime:
        """The database's clock: the start of this transaction (one clock for every
        service's deadlines, whatever the hosts' clocks say)."""
        self.connection  # noqa: B018
        now: datetime = await self._driver.fetchval("SELECT now()")
        return now

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
        self.connection  # noqa: B018
        ambient = tracing.current_carrier()
        rows = [
            _outbox_row(event, self.trace_context.get(event.causation_id, ambient))
            for event in self._pending
        ]
        if rows:
            # Message ids are derived from the cause: a row already there is this very event,
            # written by an earlier attempt whose message came back (e.g. a crash before the
            # ack of a parked compensation). Writing it once is the point.
            await self._driver.execute(
                _outbox_statement(self._outbox.name),
                *_outbox_columns(rows),
            )
        await self._transaction.commit()
        self.committed = True
        if rows:
            self._on_commit(rows)


#: More than a pool holds (database.create_engine: 10, and 10 more of overflow).
_DEAD_CONNECTIONS_SKIPPED = 32


@functools.cache
def _claim_statement(inbox: str) -> str:
    # The locks first, all of them (the aggregate), in the order Python sorts (COLLATE
    # "C", whatever the database's collation), so that two transactions locking
    # overlapping sets never wait for each other in a cycle; then the claims.
    return (
        "WITH locked AS (SELECT count(pg_advisory_xact_lock(hashtext(id))) AS n"
        ' FROM (SELECT id FROM unnest($4::text[]) AS t(id) ORDER BY id COLLATE "C") AS ids)'
        f" INSERT INTO {inbox} (consumer, message_id, message_type)"
        " SELECT $1::text, claimed.id, claimed.type"
        " FROM locked, unnest($2::text[], $3::text[]) AS claimed(id, type)"
        " ON CONFLICT DO NOTHING RETURNING message_id"
    )


_LOCK_SAGAS = (
    "SELECT count(pg_advisory_xact_lock(hashtext(id)))"
    ' FROM (SELECT id FROM unnest($1::text[]) AS t(id) ORDER BY id COLLATE "C") AS ids'
)

_OUTBOX_COLUMNS = (
    "message_id",
    "exchange",
    "routing_key",
    "message_type",
    "correlation_id",
    "headers",
    "body",
    "created_at",
)


@functools.cache
def _outbox_statement(outbox: str) -> str:
    return (
        f"INSERT INTO {outbox} ({', '.join(_OUTBOX_COLUMNS)})"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],"
        " $6::text[]::jsonb[], $7::bytea[], $8::timestamptz[])"
        " ON CONFLICT (message_id) DO NOTHING"
    )


def _outbox_columns(rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    columns = [[row[column] for row in rows] for column in _OUTBOX_COLUMNS]
    headers = _OUTBOX_COLUMNS.index("headers")
    columns[headers] = [json.dumps(value) for value in columns[headers]]
    return columns


async def _discard(connection: AsyncConnection) -> None:
    """Close `connection` for good (not back to the pool): its state is unknown."""
    try:
        await connection.invalidate()
    finally:
        await connection.close()


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
