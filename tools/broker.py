"""The broker's users, permissions and topology, generated from the saga declarations
(`contracts.access`, `contracts.topology`) and put where they are needed:

    python -m tools.broker definitions --out FILE    a RabbitMQ definitions file (make up
                                                     loads it at the broker's boot)
    python -m tools.broker apply                     the same onto a running broker, through
                                                     its management API (make dev)

Passwords come from the environment (or `.env`): `RABBITMQ_PASSWORD_<ROLE>` for each role
(ORDER, PAYMENT, ..., SAGA_LOG, CLIENT, OPERATOR); `scripts/ensure_env.py` writes them on a
fresh clone. Nothing here is imported by a service.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import sys
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from contracts import CONSUMERS, EXCHANGE
from contracts.access import WATCH_QUEUE_PREFIX, BrokerUser, broker_users, services
from contracts.topology import holding_exchange, notification_queues, queues_of
from saga_log.ops.env import local_env

ROOT = Path(__file__).resolve().parent.parent


def password_variable(role: str) -> str:
    return f"RABBITMQ_PASSWORD_{role.upper()}"


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt + sha256(salt + password))."""
    salt = salt if salt is not None else secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def topology(vhost: str) -> dict[str, Any]:
    """The exchanges, queues and bindings of every saga, as definitions for `vhost`."""
    exchanges = [{"name": EXCHANGE, "type": "topic"}]
    exchanges += [{"name": holding_exchange(s), "type": "direct"} for s in services()]
    specs = [spec for consumer in CONSUMERS for spec in queues_of(consumer)]
    specs += list(notification_queues())
    return {
        "exchanges": [
            {
                **e,
                "vhost": vhost,
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
            for e in exchanges
        ],
        "queues": [
            {
                "name": s.name,
                "vhost": vhost,
                "durable": True,
                "auto_delete": False,
                "arguments": s.arguments,
            }
            for s in specs
        ],
        # A client may declare queues to watch events through (contracts.access); none of
        # them can outlive an idle hour or grow without bound and fill the broker.
        "policies": [
            {
                "vhost": vhost,
                "name": "watch-queues",
                "pattern": f"^{re.escape(WATCH_QUEUE_PREFIX)}",
                "apply-to": "queues",
                "priority": 0,
                "definition": {"expires": 3_600_000, "max-length": 100_000},
            }
        ],
        "bindings": [
            {
                "source": source,
                "vhost": vhost,
                "destination": s.name,
                "destination_type": "queue",
                "routing_key": key,
                "arguments": {},
            }
            for s in specs
            for source, key in s.bindings
        ],
    }


def _permissions(user: BrokerUser, vhost: str, prefix: str) -> dict[str, Any]:
    return {
        "user": user.name(prefix),
        "vhost": vhost,
        "configure": user.configure,
        "write": user.write,
        "read": user.read,
    }


def _topic_permissions(user: BrokerUser, vhost: str, prefix: str) -> dict[str, Any]:
    return {
        "user": user.name(prefix),
        "vhost": vhost,
        "exchange": EXCHANGE,
        "write": user.topic_write,
        "read": user.topic_read,
    }


def definitions(vhost: str, passwords: Mapping[str, str], prefix: str = "") -> dict[str, Any]:
    """A whole definitions file: users (no guest), the vhost, permissions, topology."""
    users = broker_users()
    return {
        "users": [
            {
                "name": user.name(prefix),
                "password_hash": password_hash(passwords[user.role]),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": list(user.tags),
                "limits": {},
            }
            for user in users
        ],
        "vhosts": [{"name": vhost}],
        "permissions": [_permissions(user, vhost, prefix) for user in users],
        "topic_permissions": [_topic_permissions(user, vhost, prefix) for user in users],
        **topology(vhost),
    }


class Management:
    """The bits of RabbitMQ's management HTTP API that provisioning needs."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = url.rstrip("/")
        self._auth = "Basic " + b64encode(f"{user}:{password}".encode()).decode()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", self._auth)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
        return json.loads(text) if text else None


def apply(
    management: Management, vhost: str, passwords: Mapping[str, str], prefix: str = ""
) -> None:
    """Create (or update) every user with its password and permissions on `vhost`, and the
    topology in it, on a running broker."""
    v = quote(vhost, safe="")
    management.call("PUT", f"/api/vhosts/{v}", {})
    for user in broker_users():
        name = quote(user.name(prefix), safe="")
        management.call(
            "PUT",
            f"/api/users/{name}",
            {"password": passwords[user.role], "tags": ",".join(user.tags)},
        )
        management.call("PUT", f"/api/permissions/{v}/{name}", _permissions(user, vhost, prefix))
        management.call(
            "PUT", f"/api/topic-permissions/{v}/{name}", _topic_permissions(user, vhost, prefix)
        )
    management.call("POST", f"/api/definitions/{v}", topology(vhost))


def delete_users(management: Management, prefix: str) -> None:
    for user in broker_users():
        try:
            management.call("DELETE", f"/api/users/{quote(user.name(prefix), safe='')}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise


def passwords_from_environment(env: Mapping[str, str]) -> dict[str, str]:
    """Each role's password from `env`; a clear error naming the missing ones."""
    missing = [
        password_variable(u.role) for u in broker_users() if not env.get(password_variable(u.role))
    ]
    if missing:
        raise SystemExit(
            f"no broker password in the environment for {', '.join(missing)}: run "
            "`python3 scripts/ensure_env.py` (make up and make dev do) to write them to .env"
        )
    return {u.role: env[password_variable(u.role)] for u in broker_users()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.broker", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("definitions", help="write a RabbitMQ definitions file")
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--vhost", default="/")
    put = commands.add_parser("apply", help="provision a running broker (management API)")
    put.add_argument(
        "--management-url",
        default=os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672"),
    )
    put.add_argument(
        "--admin",
        default=os.environ.get("RABBITMQ_ADMIN", "guest:guest"),
        help="user:password of an administrator",
    )
    put.add_argument("--vhost", default="/")
    args = parser.parse_args(argv)
    passwords = passwords_from_environment(local_env(ROOT / ".env"))
    if args.command == "definitions":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(definitions(args.vhost, passwords), indent=2) + "\n")
        args.out.chmod(0o644)  # the broker's container user reads it; it holds hashes only
        print(f"wrote {args.out}: {len(broker_users())} users, the topology of every saga")
        return 0
    user, _, password = args.admin.partition(":")
    try:
        apply(Management(args.management_url, user, password), args.vhost, passwords)
    except (urllib.error.URLError, OSError) as exc:
        print(
            f"could not provision RabbitMQ through {args.management_url} as {user}: {exc}. "
            "Is the management plugin on (rabbitmq-plugins enable rabbitmq_management) and "
            "is RABBITMQ_ADMIN an administrator?",
            file=sys.stderr,
        )
        return 2
    print(f"provisioned {len(broker_users())} broker users and the topology on vhost {args.vhost}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
