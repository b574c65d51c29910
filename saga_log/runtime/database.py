"""A service's own database: its engine, and creating it on a fresh machine."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger(__name__)


def async_url(url: str) -> str:
    """`url` with the asyncpg driver, whichever PostgreSQL scheme it was given with."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def create_engine(
    url: str, *, pool_size: int = 10, flush_commits: bool = True, custom_plans: bool = False
) -> AsyncEngine:
    """An engine with a pool. Connections are not pinged before use (a round trip per
    unit of work): a unit of work replaces one that died with a restarted PostgreSQL when
    its first statement finds it dead (`UnitOfWork._begin_with`: nothing can have
    committed yet); other users fail on it and are retried like any infrastructure error.

    `flush_commits=False` is for bookkeeping whose loss in a crash of PostgreSQL only
    repeats work that is idempotent anyway (the relay's `published_at` stamps: a lost stamp
    publishes its message again, and the inboxes absorb it): its commits return before
    the WAL reaches the disk, sparing an fsync per hop.

    `custom_plans=True` plans every statement for its parameters, never from a plan cached
    by an earlier execution. For a service whose hot query reads a growing table through
    a non-unique index: asyncpg prepares each statement once per connection, and after
    five executions PostgreSQL may keep a generic plan; made while the table was nearly
    empty, that plan is a sequential scan, and nothing replans it until the table is
    analysed (never, with autovacuum off). Planning costs tens of microseconds a statement;
    the scan it avoids grew with every saga recorded."""
    # The unit of work quotes some values into SQL (a simple query takes no parameters)
    # and its quoting is right only with standard strings: never leave that to the
    # server's configuration.
    settings = {"standard_conforming_strings": "on"}
    if not flush_commits:
        settings["synchronous_commit"] = "off"
    if custom_plans:
        settings["plan_cache_mode"] = "force_custom_plan"
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={"server_settings": settings},
    )


async def driver_of(connection: AsyncConnection) -> Any:
    """The asyncpg connection beneath `connection`: the runtime's own statements, the
    same on every hop, run on it directly (SQLAlchemy's layer cost more than the round
    trip; unit_of_work)."""
    return (await connection.get_raw_connection()).driver_connection


async def ensure_database(url: str) -> None:
    """Create the database that `url` names if it does not exist yet (a fresh machine).

    Connects to the server's `postgres` database to do it; a race with another process
    creating it at the same moment is harmless.
    """
    parsed = make_url(url)
    dsn = dict(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password,
    )
    try:
        conn = await asyncpg.connect(database=parsed.database, **dsn)
    except asyncpg.InvalidCatalogNameError:
        admin = await asyncpg.connect(database="postgres", **dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{parsed.database}"')
            log.info("created database", extra={"database": parsed.database})
        except asyncpg.DuplicateDatabaseError:
            pass
        finally:
            await admin.close()
    else:
        await conn.close()
