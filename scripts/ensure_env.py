"""Make sure `.env` (beside docker-compose.yml, read by `make up` and `make dev`) holds the
secrets a fresh clone does not have, generated here, never printed, and written to `.env`
only (git ignores it):

- `SAGA_FIELD_KEYS`: the keys that seal the fare saga's card fields;
- `RABBITMQ_PASSWORD_<ROLE>`: a password for each broker user (contracts.access);
- `POSTGRES_PASSWORD`: the containers' PostgreSQL superuser (used only to make the roles);
- `DB_PASSWORD_<SERVICE>_OWNER` / `_APP`: each service's two database roles (tools.database);
- `SAGA_HTTP_TOKEN`: what the services' HTTP APIs and the history's page ask for;
- `RABBITMQ_ERLANG_COOKIE`: the shared secret of the RabbitMQ cluster's nodes
  (`make up-cluster`); whoever holds it can run any command on every node.

An existing value is kept: rotating is a deliberate act (README, Security)."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from contracts.access import broker_users  # noqa: E402
from contracts.secrets import new_key_setting  # noqa: E402
from tools.broker import password_variable  # noqa: E402
from tools.database import DATABASES  # noqa: E402
from tools.database import password_variable as database_password  # noqa: E402

ENV = ROOT / ".env"


def wanted() -> dict[str, str]:
    """Every secret the stack needs, with a fresh value for it."""
    values = {"SAGA_FIELD_KEYS": new_key_setting("k1")}
    for user in broker_users():
        values[password_variable(user.role)] = secrets.token_urlsafe(24)
    values["POSTGRES_PASSWORD"] = secrets.token_urlsafe(24)
    for service in DATABASES:
        for kind in ("owner", "app"):
            values[database_password(service, kind)] = secrets.token_urlsafe(24)
    values["SAGA_HTTP_TOKEN"] = secrets.token_urlsafe(32)
    # Letters and digits only: it goes on the Erlang command line (-setcookie).
    values["RABBITMQ_ERLANG_COOKIE"] = secrets.token_hex(32)
    return values


def main() -> int:
    lines = ENV.read_text().splitlines() if ENV.exists() else []
    present = {line.partition("=")[0] for line in lines if "=" in line}
    missing = {key: value for key, value in wanted().items() if key not in present}
    if not missing:
        return 0
    lines += [f"{key}={value}" for key, value in missing.items()]
    # Made unreadable to others before a secret is written into it, not after.
    descriptor = os.open(ENV, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as env_file:
        env_file.write("\n".join(lines) + "\n")
    print(f"wrote {len(missing)} new secret(s) to {ENV}: {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
