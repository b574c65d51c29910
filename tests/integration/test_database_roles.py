"""PostgreSQL least privilege, against a real server: a service migrates as its schema's
owner and runs as a role that may only read and write its own rows; neither reaches
another service's database; provisioning again rotates the passwords and changes nothing
else."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from saga_log.runtime import create_engine, upgrade
from services.order import main as order_main
from tests.support import drop_databases
from tools.database import DatabaseRoles, provision, role_url, scram_verifier


async def connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url)


@pytest.fixture
async def two_services(
    pg_server_url: str,
) -> AsyncIterator[dict[str, tuple[DatabaseRoles, str, str]]]:
    suffix = uuid.uuid4().hex[:8]
    made = {}
    for service in ("order", "payment"):
        roles = DatabaseRoles.of(
            service, database=f"test_{service}_{suffix}", prefix=f"test_{suffix}_"
        )
        owner, app = uuid.uuid4().hex, uuid.uuid4().hex
        await provision(pg_server_url, roles, owner, app)
        made[service] = (roles, owner, app)
    try:
        yield made
    finally:
        await drop_databases(pg_server_url, [roles.database for roles, _, _ in made.values()])


async def test_the_owner_migrates_and_the_app_role_only_reads_and_writes_rows(
    pg_server_url: str, two_services: dict[str, tuple[DatabaseRoles, str, str]]
) -> None:
    roles, owner_password, app_password = two_services["order"]
    owner_url = role_url(pg_server_url, roles.database, roles.owner, owner_password)
    app_url = role_url(pg_server_url, roles.database, roles.app, app_password)
    engine = create_engine(owner_url, pool_size=1)
    try:
        await upgrade(engine, order_main.SERVICE.migrations)
    finally:
        await engine.dispose()

    app = await connect(app_url)
    try:
        assert await app.fetchval("SELECT current_setting('is_superuser')") == "off"
        await app.execute(
            "INSERT INTO orders (order_id, order_date, customer_id, order_status, items)"
            " VALUES ('40-roles', now(), 'c', 'New', '[]')"
        )
        assert await app.fetchval("SELECT count(*) FROM orders") == 1
        await app.execute("DELETE FROM orders")
        for ddl in (
            "CREATE TABLE stolen (x int)",
            "DROP TABLE orders",
            "ALTER TABLE orders ADD COLUMN x int",
            "TRUNCATE orders",
            "CREATE SCHEMA elsewhere",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute(ddl)
    finally:
        await app.close()

    # Neither role of one service may even connect to another's database, nor may PUBLIC.
    other, _, _ = two_services["payment"]
    for user, password in ((roles.app, app_password), (roles.owner, owner_password)):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connect(role_url(pg_server_url, other.database, user, password))
    owner = await connect(owner_url)
    try:
        row = await owner.fetchrow(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1",
            roles.owner,
        )
        assert tuple(row) == (False, False, False)
        assert (
            await owner.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'orders'")
            == roles.owner
        )
    finally:
        await owner.close()


async def test_provisioning_again_rotates_the_passwords(
    pg_server_url: str, two_services: dict[str, tuple[DatabaseRoles, str, str]]
) -> None:
    roles, owner_password, _ = two_services["order"]

    async def verifiers() -> dict[str, str]:
        conn = await connect(pg_server_url)
        try:
            rows = await conn.fetch(
                "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY($1)",
                [roles.owner, roles.app],
            )
        finally:
            await conn.close()
        return {row["rolname"]: row["rolpassword"] for row in rows}

    before = await verifiers()
    await provision(pg_server_url, roles, owner_password, "rotated")
    after = await verifiers()
    # (This server may trust local connections, so the stored verifiers say it.)
    assert after[roles.app] != before[roles.app] and after[roles.app].startswith("SCRAM-SHA-256$")
    conn = await connect(role_url(pg_server_url, roles.database, roles.app, "rotated"))
    await conn.close()


def test_the_stored_verifier_is_scram_and_never_the_password() -> None:
    verifier = scram_verifier("s3cret", salt=b"0" * 16)
    assert verifier.startswith("SCRAM-SHA-256$4096:") and "s3cret" not in verifier
    assert verifier != scram_verifier("s3cret")  # a fresh salt each time
