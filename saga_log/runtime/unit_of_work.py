"""The unit of work: one local transaction of a service, with its outbox and inbox.

The runtime's own statements (claim and lock, outbox insert, BEGIN and COMMIT) run on the
asyncpg connection beneath SQLAlchemy's: they are the same on every hop, and SQLAlchemy's
layer cost more than the round trip itself (about 230 against 90 microseconds a statement,
`docs/performance.md`). Handlers keep SQLAlchemy Core on `connection`, in the same
transaction: the transaction is asyncpg's, and SQLAlchemy's side of the connection is in
autocommit, so that it neither begins nor commits one of its own.

A hop's transaction takes two round trips of the runtime's: BEGIN travels with the inbox
claim, and the outbox insert with the COMMIT, each pair as one simple query; in between,
the handler's own statements. Before, BEGIN and COMMIT were round trips of their own. A
simple query takes no parameters, so the claim and the insert are PREPAREd once per
connection and EXECUTEd with their arguments as quoted literals (`_literal`).
"""

from __future__ import annotations

import functools
import json
import logging
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import asyncpg
from sqlalchemy import JSON, Table
from sqlalchemy.dialects import postgresql
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
        #: Whether BEGIN has been sent: it goes out with the unit of work's first statement.
        self._begun = False
        self._locked: set[str] = set()
        self.committed = False

    @property
    def connection(self) -> AsyncConnection:
        self._in_block()
        if not self._begun:
            # A statement through SQLAlchemy now would run outside the transaction.
            raise RuntimeError(
                "the transaction has not begun: claim, lock or `await uow.begin()` first"
            )
        assert self._connection is not None
        return self._connection

    async def begin(self) -> None:
        """Send BEGIN now, if no statement has yet (handlers need not: the delivery path
        claims first; see `_run`)."""
        await self._run("")

    async def __aenter__(self) -> UnitOfWork:
        await self._checkout()
        return self

    async def _checkout(self) -> None:
        """Take a connection from the pool, skipping those asyncpg already knows closed."""
        for _ in range(_DEAD_CONNECTIONS_SKIPPED):
            connection = await self._engine.connect()
            try:
                # No round trip: the adapter only stops issuing BEGIN and COMMIT itself.
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                driver = await driver_of(connection)
                if driver.is_closed():
                    # PostgreSQL ended it while it waited in the pool (a restart, a
                    # terminated backend) and asyncpg knows it already: another, rather
                    # than failing this unit of work on it and spending a retry of the
                    # message (a whole pool of them once parked a message of a saga).
                    await _discard(connection)
                    continue
            except BaseException:
                await _discard(connection)
                raise
            self._connection, self._driver = connection, driver
            return
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
        if connection is None:
            return  # a lost connection was discarded and no other could be had
        self._connection = None
        if self.committed or not self._begun:
            await connection.close()
            return
        try:
            await self._driver.execute("ROLLBACK")
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
        self._in_block()
        if not self._begun and len(unique) == 1:
            # The usual first statement of a hop: BEGIN and the claim in one round trip.
            # A simple query returns no rows, only the last command's tag: INSERT 0 1
            # when this claim is new, INSERT 0 0 when the key was taken.
            ((message_id, message_type),) = unique.items()
            tag = await self._run(
                f"EXECUTE {_claim_name(self._inbox.name)}({_literal(consumer)},"
                f" {_array([message_id])}, {_array([message_type])}, {_array(sagas)})"
            )
            self._locked.update(sagas)
            return {message_id} if tag == "INSERT 0 1" else set()
        driver = await self._begun_driver()
        # Arrays, not a multi-row VALUES: one SQL text whatever the batch size, so one
        # prepared statement per connection instead of one per size.
        rows = await driver.fetch(
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
            driver = await self._begun_driver()
            await driver.execute(_LOCK_SAGAS, ids)  # it sorts them, as Python does
            self._locked.update(ids)

    async def now(self) -> datetime:
        """The database's clock: the start of this transaction (one clock for every
        service's deadlines, whatever the hosts' clocks say)."""
        driver = await self._begun_driver()
        now: datetime = await driver.fetchval("SELECT now()")
        return now

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """A runtime statement straight on asyncpg, in this transaction (SQLAlchemy's layer
        costs more than the round trip: the module docstring); asyncpg Records."""
        driver = await self._begun_driver()
        rows: list[Any] = await driver.fetch(sql, *args)
        return rows

    async def insert(
        self,
        table: Table,
        rows: Sequence[Mapping[str, Any]],
        *,
        skip_conflicts: bool = True,
        update_on_conflict: Sequence[str] = (),
        returning: str | None = None,
    ) -> list[Any]:
        """Insert `rows` (mappings with the same keys) into `table`, in one statement
        straight on asyncpg (a handler's hot write: SQLAlchemy's layer cost more than the
        round trip, the module docstring), one array per column, so one SQL text whatever
        the number of rows. A row whose primary key exists updates the columns named in
        `update_on_conflict` if any, else is skipped unless `skip_conflicts` is False;
        `returning` names a column to return of each row inserted. JSON columns take
        Python values, serialised here as SQLAlchemy would."""
        if not rows:
            return []
        driver = await self._begun_driver()
        names = tuple(rows[0])
        sql, json_columns = _insert_statement(
            table, names, skip_conflicts, tuple(update_on_conflict), returning
        )
        columns = [[row[name] for row in rows] for name in names]
        for index in json_columns:
            columns[index] = [json.dumps(value) for value in columns[index]]
        found: list[Any] = await driver.fetch(sql, *columns)
        return found

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
        self._in_block()
        ambient = tracing.current_carrier()
        rows = [
            _outbox_row(event, self.trace_context.get(event.causation_id, ambient))
            for event in self._pending
        ]
        # Message ids are derived from the cause: a row already there is this very event,
        # written by an earlier attempt whose message came back (e.g. a crash before the
        # ack of a parked compensation). Writing it once is the point. The insert and the
        # COMMIT go in one round trip; if the insert fails, PostgreSQL runs no COMMIT.
        if not rows and not self._begun:
            self.committed = True  # no statement ran: nothing to commit
            return
        insert = _outbox_execute(self._outbox.name, rows) if rows else ""
        tag = await self._run(f"{insert}; COMMIT" if insert else "COMMIT")
        if tag != "COMMIT":
            # COMMIT in a transaction that an earlier error aborted answers ROLLBACK.
            raise RuntimeError(f"the transaction was not committed (PostgreSQL said {tag!r})")
        self.committed = True
        if rows:
            self._on_commit(rows)

    def _in_block(self) -> None:
        if self._connection is None:
            raise RuntimeError("the unit of work is used outside its `async with` block")

    async def _begun_driver(self) -> Any:
        """The asyncpg connection, this unit of work's transaction begun on it."""
        self._in_block()
        await self.begin()
        return self._driver

    async def _run(self, sql: str) -> str:
        """Run `sql` (a simple query, no parameters), preceded by BEGIN if none was sent
        yet, in one round trip; the last command's tag. An empty `sql` only begins."""
        if not self._begun:
            return await self._begin_with(sql)
        if not sql:
            return ""
        return await self._execute(sql)

    async def _begin_with(self, sql: str) -> str:
        """The unit of work's first round trip: BEGIN, then `sql`. On a connection that
        turns out dead, again on another: this round trip carries no COMMIT, so nothing
        of it can have committed, and no statement of the handler's has run yet.

        A connection the server ended while it waited in the pool is not always closed
        for asyncpg at checkout: the server's last message (FATAL, terminating connection)
        can have been read and the close not yet, and then the connection refuses any
        statement (InternalClientError, "another operation is in progress")."""
        for _ in range(_DEAD_CONNECTIONS_SKIPPED):
            try:
                await self._prepare()
            except _CONNECTION_LOST as lost:
                await self._replace_connection(lost)
                continue
            # Marked first: if the round trip fails after BEGIN ran, the rollback is needed.
            self._begun = True
            try:
                return await self._execute(f"BEGIN; {sql}" if sql else "BEGIN")
            except _CONNECTION_LOST as lost:
                self._begun = False
                await self._replace_connection(lost)
        raise RuntimeError(f"{_DEAD_CONNECTIONS_SKIPPED} connections in a row were lost at once")

    async def _replace_connection(self, lost: BaseException) -> None:
        log.info("a pooled connection was lost before its first statement (%r); another", lost)
        stale = self._connection
        assert stale is not None
        self._connection = None
        await _discard(stale)
        await self._checkout()

    async def _execute(self, sql: str) -> str:
        try:
            return str(await self._driver.execute(sql))
        except asyncpg.InvalidSQLStatementNameError:
            # Our prepared statements are gone (DEALLOCATE ALL, say): this unit of work
            # fails and is retried like any other, the next one prepares them again.
            _PREPARED.pop(self._driver, None)
            raise

    async def _prepare(self) -> None:
        """PREPARE the claim and the outbox insert on this connection, once (one round
        trip per pooled connection): EXECUTE then runs them in a simple query, sharing its
        round trip with BEGIN or COMMIT, with a plan PostgreSQL keeps instead of parsing
        and planning their text every time."""
        prepared = _PREPARED.setdefault(self._driver, set())
        wanted = _prepare_statements(self._inbox.name, self._outbox.name)
        if missing := wanted.keys() - prepared:
            await self._driver.execute("; ".join(wanted[name] for name in missing))
            prepared.update(missing)


#: More than a pool holds (database.create_engine: 10, and 10 more of overflow).
_DEAD_CONNECTIONS_SKIPPED = 32


#: What a connection that died under us raises: the client's view of the connection
#: (InterfaceError: closed in the middle of an operation; InternalClientError: the
#: server's FATAL read while idle), the server ending it (08, 57P01-57P03), the socket.
_CONNECTION_LOST: tuple[type[BaseException], ...] = (
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    OSError,
)


#: Per asyncpg connection, the names of the runtime's statements PREPAREd on it.
_PREPARED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


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


def _claim_name(inbox: str) -> str:
    return f"saga_claim_{inbox}"


def _outbox_name(outbox: str) -> str:
    return f"saga_outbox_{outbox}"


@functools.cache
def _prepare_statements(inbox: str, outbox: str) -> dict[str, str]:
    return {
        _claim_name(inbox): f"PREPARE {_claim_name(inbox)} (text, text[], text[], text[]) AS "
        + _claim_statement(inbox),
        _outbox_name(outbox): f"PREPARE {_outbox_name(outbox)}"
        f" ({', '.join(f'{type_}[]' for type_ in _OUTBOX_TYPES)}) AS " + _outbox_statement(outbox),
    }


@functools.cache
def _insert_statement(
    table: Table,
    names: tuple[str, ...],
    skip_conflicts: bool,
    update_on_conflict: tuple[str, ...],
    returning: str | None,
) -> tuple[str, list[int]]:
    arrays = []
    json_columns = []
    for index, name in enumerate(names, start=1):
        column_type = table.c[name].type
        if isinstance(column_type, JSON):
            arrays.append(f"${index}::text[]::jsonb[]")
            json_columns.append(index - 1)
        else:
            arrays.append(f"${index}::{column_type.compile(dialect=_POSTGRESQL)}[]")
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({', '.join(arrays)})"
    if update_on_conflict:
        key = ", ".join(column.name for column in table.primary_key.columns)
        updates = ", ".join(
            f"{table.c[name].name} = EXCLUDED.{table.c[name].name}" for name in update_on_conflict
        )
        sql += f" ON CONFLICT ({key}) DO UPDATE SET {updates}"
    elif skip_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    if returning is not None:
        sql += f" RETURNING {table.c[returning].name}"
    return sql, json_columns


_POSTGRESQL = postgresql.dialect()  # type: ignore[no-untyped-call]

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
#: The types of the prepared insert's arrays, column by column (the headers go as JSON text).
_OUTBOX_TYPES = ("uuid", "text", "text", "text", "text", "text", "bytea", "timestamptz")


@functools.cache
def _outbox_statement(outbox: str) -> str:
    return (
        f"INSERT INTO {outbox} ({', '.join(_OUTBOX_COLUMNS)})"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],"
        " $6::text[]::jsonb[], $7::bytea[], $8::timestamptz[])"
        " ON CONFLICT (message_id) DO NOTHING"
    )


def _outbox_execute(outbox: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """EXECUTE of the prepared outbox insert, its arguments as literals, to share a simple
    query (one round trip) with the COMMIT: a simple query takes no parameters."""
    texts = [
        (
            str(row["message_id"]),
            row["exchange"],
            row["routing_key"],
            row["message_type"],
            row["correlation_id"],
            json.dumps(row["headers"]),
            "\\x" + bytes(row["body"]).hex(),  # bytea's hex input: any bytes
            row["created_at"].isoformat(),
        )
        for row in rows
    ]
    arrays = (
        _array(column, type_)
        for column, type_ in zip(zip(*texts, strict=True), _OUTBOX_TYPES, strict=True)
    )
    return f"EXECUTE {_outbox_name(outbox)}({', '.join(arrays)})"


def _literal(value: str) -> str:
    """`value` as a PostgreSQL string literal. Safe because every connection of ours has
    `standard_conforming_strings` on (database.create_engine sets it): in such a literal
    only the quote is special, and doubling it is the whole escape."""
    if not isinstance(value, str):
        raise TypeError(f"a literal must be a str, not {type(value).__name__}")
    if "\x00" in value:
        raise ValueError("PostgreSQL text cannot hold a NUL character")
    return "'" + value.replace("'", "''") + "'"


def _array(values: Sequence[str], type_: str = "text") -> str:
    """`values` as a PostgreSQL array of `type_`, each given in its text form."""
    return f"ARRAY[{', '.join(_literal(v) for v in values)}]::{type_}[]"


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
