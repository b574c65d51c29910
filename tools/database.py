"""PostgreSQL least privilege, one database per service: two roles each.

- `<service>_owner` owns the database and its schema and runs the migrations (it may
  create and alter tables there, and nothing anywhere else: no superuser, no CREATEDB, no
  CREATEROLE);
- `<service>_app` is what the service runs as: it may connect to its own database only and
  read and write the rows of its tables, never create, alter or drop anything.

Nobody else may connect to a service's database (PUBLIC loses CONNECT): a service's roles
cannot reach another's database even on a shared server (`make dev`).

The statements are generated here, once, with the passwords as SCRAM-SHA-256 verifiers
(PostgreSQL stores those, never the password), and used three ways:

    python -m tools.database sql --out .run/postgres    # make up: one file per service,
                                                        # run by the db-roles container
    python -m tools.database provision                  # make dev: on the local server
    provision(...)                                      # tests: roles of their own

They are idempotent: run again, they change only what differs (a rotated password), and
hand tables an older stack created as the superuser over to the owner.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

#: Every service's database, by the service (and the history) that owns it.
DATABASES: dict[str, str] = {
    "order": "orders",
    "payment": "payments",
    "inventory": "inventory",
    "fare": "fares",
    "accounting": "accounting",
    "saga_log": "saga_log",
}
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class DatabaseRoles:
    """A service's database and its two roles' names."""

    service: str
    database: str
    owner: str
    app: str

    @classmethod
    def of(cls, service: str, *, database: str | None = None, prefix: str = "") -> DatabaseRoles:
        return cls(
            service=service,
            database=database or DATABASES[service],
            owner=f"{prefix}{service}_owner",
            app=f"{prefix}{service}_app",
        )


def password_variable(service: str, kind: str) -> str:
    """The `.env` variable holding a role's password: DB_PASSWORD_ORDER_APP, ..."""
    return f"DB_PASSWORD_{service.upper()}_{kind.upper()}"


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = 4096) -> str:
    """What PostgreSQL stores for `password` under SCRAM-SHA-256 (RFC 5802/7677), so that
    the password itself never appears in a statement, a file or a server log."""
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def statements(roles: DatabaseRoles, owner_password: str, app_password: str) -> list[str]:
    """The statements that give `roles.database` its owner and runtime role (run as a
    superuser, connected to that database)."""
    owner, app, database = _ident(roles.owner), _ident(roles.app), _ident(roles.database)
    attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT"
    created = " ".join(
        f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_literal(name)}) "
        f"THEN CREATE ROLE {_ident(name)}; END IF;"
        for name in (roles.owner, roles.app)
    )
    return [
        f"DO $$ BEGIN {created} END $$",
        f"ALTER ROLE {owner} WITH {attributes} PASSWORD {_literal(scram_verifier(owner_password))}",
        f"ALTER ROLE {app} WITH {attributes} PASSWORD {_literal(scram_verifier(app_password))}",
        f"ALTER DATABASE {database} OWNER TO {owner}",
        f"REVOKE ALL ON DATABASE {database} FROM PUBLIC",
        f"GRANT CONNECT ON DATABASE {database} TO {app}",
        f"ALTER SCHEMA public OWNER TO {owner}",
        "REVOKE ALL ON SCHEMA public FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA public TO {app}",
        # Tables an older stack's migrations made as the superuser: the owner takes them
        # (their sequences follow). The app role's grants then come from the lines below.
        "DO $$ DECLARE r record; BEGIN FOR r IN "
        "SELECT c.relname, c.relkind FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v') "
        f"AND pg_get_userbyid(c.relowner) <> {_literal(roles.owner)} LOOP "
        "EXECUTE format('ALTER %s public.%I OWNER TO %I', "
        "CASE r.relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END, "
        f"r.relname, {_literal(roles.owner)}); END LOOP; END $$",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app}",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {app}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
        f"GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {app}",
    ]


def role_url(server_url: str, database: str, user: str, password: str) -> str:
    """`server_url` (any database) as `user` on `database`."""
    parts = urlsplit(server_url)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname or '127.0.0.1'}"
    netloc += f":{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{database}"))


async def provision(
    server_url: str, roles: DatabaseRoles, owner_password: str, app_password: str
) -> None:
    """Create `roles.database` if missing and give it its roles, as the superuser that
    `server_url` names."""
    import asyncpg

    parts = urlsplit(server_url)
    connect = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "user": parts.username or "postgres",
        "password": parts.password,
    }
    admin = await asyncpg.connect(database="postgres", **connect)
    try:
        exists = await admin.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", roles.database
        )
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await admin.execute(f"CREATE DATABASE {_ident(roles.database)}")
    finally:
        await admin.close()
    conn = await asyncpg.connect(database=roles.database, **connect)
    try:
        async with conn.transaction():
            for statement in statements(roles, owner_password, app_password):
                await conn.execute(statement)
    finally:
        await conn.close()


async def drop_roles(server_url: str, roles: DatabaseRoles) -> None:
    """Drop the roles (their database already dropped; tests)."""
    import asyncpg

    parts = urlsplit(server_url)
    conn = await asyncpg.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password,
        database="postgres",
    )
    try:
        for name in (roles.app, roles.owner):
            await conn.execute(f"DROP ROLE IF EXISTS {_ident(name)}")
    finally:
        await conn.close()


def passwords_from(env: Mapping[str, str], service: str) -> tuple[str, str]:
    """The owner's and the app role's passwords of `service`, from `env` (`.env`)."""
    found = []
    for kind in ("owner", "app"):
        variable = password_variable(service, kind)
        value = env.get(variable)
        if not value:
            raise SystemExit(f"{variable} is not set: run `make up` or `make dev`, which write it")
        found.append(value)
    return found[0], found[1]


def main(argv: list[str] | None = None) -> int:
    from saga_log.ops.env import local_env

    parser = argparse.ArgumentParser(prog="python -m tools.database", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sql = commands.add_parser("sql", help="write <service>.sql for each service (make up)")
    sql.add_argument("--out", type=Path, required=True)
    local = commands.add_parser("provision", help="create the databases and roles (make dev)")
    local.add_argument(
        "--server",
        default=os.environ.get("PG_ADMIN_URL", DEFAULT_SERVER),
        help="a superuser's URL (PG_ADMIN_URL; default the local server as postgres)",
    )
    args = parser.parse_args(argv)
    env = local_env()
    if args.command == "sql":
        args.out.mkdir(parents=True, exist_ok=True)
        for service in DATABASES:
            path = args.out / f"{service}.sql"
            text = ";\n".join(statements(DatabaseRoles.of(service), *passwords_from(env, service)))
            path.write_text(f"-- generated by python -m tools.database sql: do not edit\n{text};\n")
            path.chmod(0o644)  # hashes only; the db-roles container reads it as its own user
        print(f"wrote the database roles of {len(DATABASES)} services to {args.out}")
        return 0

    async def provision_all() -> None:
        for service in DATABASES:
            await provision(args.server, DatabaseRoles.of(service), *passwords_from(env, service))

    try:
        asyncio.run(provision_all())
    except OSError as exc:
        parts = urlsplit(args.server)
        shown = (
            urlunsplit(parts._replace(netloc=parts.hostname or ""))
            if parts.password
            else args.server
        )
        print(f"cannot reach PostgreSQL at {shown}: {exc}", file=sys.stderr)
        return 2
    print(f"databases and roles ready for {', '.join(DATABASES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
