"""The deadline watch's first read (outside a transaction, every second of a service's
life): it finds exactly what the services' locking query would, and PostgreSQL answers
it from the partial index on running sagas."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import asyncpg
import pytest

from saga_log.runtime import ensure_database
from saga_log.runtime.database import create_engine
from saga_log.runtime.deadlines import _any_overdue_statement
from saga_log.runtime.migrations import upgrade
from services.fare import main as fare_main
from services.order import main as order_main
from tests.support import database_url, drop_databases

STEP, DEADLINE = timedelta(seconds=10), timedelta(seconds=600)


@pytest.mark.parametrize(
    ("service", "table", "id_column"),
    [(order_main, "order_sagas", "order_id"), (fare_main, "fare_sagas", "fare_id")],
    ids=["order", "fare"],
)
async def test_the_first_read_finds_overdue_running_sagas_only(
    pg_server_url: str, service: object, table: str, id_column: str
) -> None:
    name = f"test_deadlines_{uuid.uuid4().hex[:8]}"
    url = database_url(pg_server_url, name)
    await ensure_database(url)
    engine = create_engine(url, pool_size=1)
    try:
        await upgrade(engine, service.SERVICE.migrations)  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
    connection = await asyncpg.connect(url.replace("+asyncpg", ""))
    statement = _any_overdue_statement(table)

    async def add(saga_id: str, outcome: str, silent_for: str, age: str = "1 second") -> None:
        await connection.execute(
            f"INSERT INTO {table} ({id_column}, outcome, started_at, updated_at)"
            " VALUES ($1, $2, now() - $3::text::interval, now() - $4::text::interval)",
            saga_id,
            outcome,
            age,
            silent_for,
        )

    try:
        await add("fresh", "running", "1 second")
        await add("ended-long-ago", "failed", "1 hour", "2 hours")
        assert await connection.fetchval(statement, DEADLINE, STEP) is None
        await add("silent", "running", "11 seconds")
        assert await connection.fetchval(statement, DEADLINE, STEP) == 1
        await connection.execute(f"DELETE FROM {table} WHERE {id_column} = 'silent'")
        await add("too-old", "running", "1 second", "11 minutes")
        assert await connection.fetchval(statement, DEADLINE, STEP) == 1
        # With many ended sagas, only the partial index on running ones is worth reading.
        await connection.execute(
            f"INSERT INTO {table} ({id_column}, outcome) SELECT 'done-' || i, 'succeeded'"
            " FROM generate_series(1, 5000) AS i"
        )
        await connection.execute(f"ANALYZE {table}")
        literal = statement.replace("$1", "'600 s'").replace("$2", "'10 s'")
        plan = await connection.fetchval(f"EXPLAIN (FORMAT JSON) {literal}")
        assert "Index" in json.dumps(plan), plan
    finally:
        await connection.close()
        await drop_databases(pg_server_url, [name])
