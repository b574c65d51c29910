"""Alembic, shared by the services: each keeps its own history in `services/<name>/migrations`,
applied at start under an advisory lock so that two replicas never migrate at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command, op
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from saga_log.runtime.database import async_url

_LOCK = "SELECT pg_advisory_xact_lock(hashtext('alembic-migrations'))"


def alembic_config(migrations: Path, url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    if url is not None:
        config.set_main_option("sqlalchemy.url", async_url(url))
    return config


async def upgrade(engine: AsyncEngine, migrations: Path) -> None:
    """Bring the service's database to the head of its migration history."""
    async with engine.begin() as connection:
        await connection.execute(text(_LOCK))

        def _run(sync_connection: Connection) -> None:
            config = alembic_config(migrations)
            config.attributes["connection"] = sync_connection
            command.upgrade(config, "head")

        await connection.run_sync(_run)


def run_env(context: EnvironmentContext, metadata: MetaData) -> None:
    """The body of every service's `env.py`: online migrations on the given connection,
    or, from the `alembic` command line, on a connection of its own."""

    def _migrate(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()

    connection: Connection | None = context.config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return

    async def _standalone() -> None:
        url = context.config.get_main_option("sqlalchemy.url")
        assert url, "set sqlalchemy.url (alembic -x or the service's *_DATABASE_URL)"
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(_migrate)
        await engine.dispose()

    asyncio.run(_standalone())


def create_runtime_tables_v1() -> None:
    """The outbox and inbox tables as first released (called from each service's first
    migration; a later change gets a `_v2` and a migration of its own)."""
    op.create_table(
        "outbox",
        sa.Column("position", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("message_id", postgresql.UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("exchange", sa.String(255), nullable=False),
        sa.Column("routing_key", sa.String(255), nullable=False),
        sa.Column("message_type", sa.String(255), nullable=False),
        sa.Column("correlation_id", sa.String(255), nullable=False),
        sa.Column(
            "headers", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("published_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "outbox_unpublished",
        "outbox",
        ["position"],
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(255), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("message_type", sa.Text, nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("consumer", "message_id"),
    )


def drop_runtime_tables_v1() -> None:
    op.drop_table("inbox")
    op.drop_index("outbox_unpublished", table_name="outbox")
    op.drop_table("outbox")


def create_cancellation_table_v1() -> None:
    """`cancelled_sagas` as first released (the order saga's only), for the services that
    refuse late events of a cancelled saga. New services start at `_v2`."""
    op.create_table(
        "cancelled_sagas",
        sa.Column("order_id", sa.String(64), primary_key=True),
        sa.Column("reason", sa.String(128), nullable=False),
        sa.Column(
            "cancelled_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def create_cancellation_table_v2() -> None:
    """`cancelled_sagas` keyed by saga type and id (saga_log.runtime.cancellation)."""
    op.create_table(
        "cancelled_sagas",
        sa.Column("saga_type", sa.String(64), nullable=False),
        sa.Column("saga_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(128), nullable=False),
        sa.Column(
            "cancelled_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("saga_type", "saga_id"),
    )


def upgrade_cancellation_table_v1_to_v2() -> None:
    """A `_v1` table's rows were all order sagas': they keep their ids, typed `order`."""
    op.alter_column("cancelled_sagas", "order_id", new_column_name="saga_id")
    op.add_column(
        "cancelled_sagas",
        sa.Column("saga_type", sa.String(64), nullable=False, server_default="order"),
    )
    op.alter_column("cancelled_sagas", "saga_type", server_default=None)
    op.drop_constraint("cancelled_sagas_pkey", "cancelled_sagas", type_="primary")
    op.create_primary_key("cancelled_sagas_pkey", "cancelled_sagas", ["saga_type", "saga_id"])


def downgrade_cancellation_table_v2_to_v1() -> None:
    op.drop_constraint("cancelled_sagas_pkey", "cancelled_sagas", type_="primary")
    op.execute("DELETE FROM cancelled_sagas WHERE saga_type <> 'order'")
    op.drop_column("cancelled_sagas", "saga_type")
    op.alter_column("cancelled_sagas", "saga_id", new_column_name="order_id")
    op.create_primary_key("cancelled_sagas_pkey", "cancelled_sagas", ["order_id"])


__all__: list[Any] = [
    "alembic_config",
    "create_cancellation_table_v1",
    "create_cancellation_table_v2",
    "create_runtime_tables_v1",
    "downgrade_cancellation_table_v2_to_v1",
    "drop_runtime_tables_v1",
    "run_env",
    "upgrade",
    "upgrade_cancellation_table_v1_to_v2",
]


def create_succeeded_table_v1() -> None:
    """`succeeded_sagas` (saga_log.runtime.conclusion): the sagas a participant knows
    succeeded, which no compensation undoes."""
    op.create_table(
        "succeeded_sagas",
        sa.Column("saga_type", sa.String(64), nullable=False),
        sa.Column("saga_id", sa.String(64), nullable=False),
        sa.Column(
            "succeeded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("saga_type", "saga_id"),
    )
