"""Where the tools find their broker credentials: the environment, then `.env` (which
`make up` and `make dev` write on a fresh clone)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

DEFAULT_AMQP_URL = "amqp://127.0.0.1:5672/"


def local_env(path: Path | None = None) -> dict[str, str]:
    """`KEY=VALUE` lines of `.env` (in the working directory unless `path`), under the
    process environment (which wins)."""
    found: dict[str, str] = {}
    env_file = path or Path.cwd() / ".env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.lstrip().startswith("#"):
                found[key.strip()] = value.strip()
    return {**found, **os.environ}


def broker_url(role: str, env: dict[str, str] | None = None) -> str:
    """The AMQP URL to act as the broker user `role` (`client`, `operator`):
    `<ROLE>_AMQP_URL` if set; else `AMQP_URL` (default the local broker) with that user and
    its password (`RABBITMQ_PASSWORD_<ROLE>`), unless `AMQP_URL` already names a user."""
    env = local_env() if env is None else env
    explicit = env.get(f"{role.upper()}_AMQP_URL")
    if explicit:
        return explicit
    base = env.get("AMQP_URL") or DEFAULT_AMQP_URL
    parts = urlsplit(base)
    password = env.get(f"RABBITMQ_PASSWORD_{role.upper()}")
    if parts.username or not password:
        return base
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(role, safe='')}:{quote(password, safe='')}@{host}:{parts.port or 5672}"
    return urlunsplit(parts._replace(netloc=netloc))


def http_headers(env: dict[str, str] | None = None) -> dict[str, str]:
    """The headers that get the tools past a service's token (`SAGA_HTTP_TOKEN`), if one
    is configured."""
    env = local_env() if env is None else env
    token = env.get("SAGA_HTTP_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}
