"""What the integration and end-to-end tests share: an isolated RabbitMQ vhost, fresh
databases, the services as real processes, and waiting for conditions."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from base64 import b64encode
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg

from contracts.access import broker_users
from contracts.secrets import new_key_setting
from tools.broker import Management, apply, delete_users
from tools.database import DATABASES, DatabaseRoles, provision, role_url

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
SERVICES = ("order", "payment", "inventory", "fare", "accounting")
#: How each process is started and where its settings live (the recorder is saga_log's).
MODULES = {
    "order": "services.order",
    "payment": "services.payment",
    "inventory": "services.inventory",
    "fare": "services.fare",
    "accounting": "services.accounting",
    "saga_log": "saga_log.recorder",
}
ENV_PREFIX = {
    "order": "ORDER",
    "payment": "PAYMENT",
    "inventory": "INVENTORY",
    "fare": "FARE",
    "accounting": "ACCOUNTING",
    "saga_log": "SAGA_LOG",
}
#: The tests' own key for the fare saga's sealed card fields (made afresh each session).
FIELD_KEYS = new_key_setting("test")

T = TypeVar("T")

#: Retry delays short enough for tests; the policy's shape stays the sample's.
FAST_RETRIES = {
    "SAGA_RETRY_FIRST_DELAY": "0.2",
    "SAGA_RETRY_BACKOFF": "2",
    "SAGA_RETRY_MAX_DELAY": "0.8",
    "SAGA_RETRY_MAX_ATTEMPTS": "3",
    "SAGA_OUTBOX_POLL_INTERVAL": "0.5",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def eventually(
    probe: Callable[[], Awaitable[T]], *, timeout: float = 20.0, interval: float = 0.1
) -> T:
    """Poll `probe` until it returns a truthy value; fail with its last value after `timeout`."""
    deadline = time.monotonic() + timeout
    value: T = await probe()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value: {value!r})")
        await asyncio.sleep(interval)
        value = await probe()
    return value


class LingeringCloseProxy:
    """A TCP proxy to `host:port` whose server side ends as a terminated PostgreSQL backend
    does, with the close still on its way: what the server sent last (its FATAL message)
    reaches the client, the close does not until the client sends again (as the server's
    host answers a closed socket with a reset) or `release` is called. The window in which
    asyncpg has read a pooled connection's end and does not yet know it closed, held open
    for a test."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._held: set[asyncio.StreamWriter] = set()
        self._holding = True
        #: Connections whose server side has ended, everything it sent passed on.
        self.ended_upstream = 0
        self.port = 0

    async def __aenter__(self) -> LingeringCloseProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def release(self) -> None:
        """Let the closes through, those held and those to come."""
        self._holding = False
        for writer in self._held:
            writer.transport.abort()
        self._held.clear()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self._target)
        self._writers.update((client_w, server_w))
        upstream_ended = asyncio.Event()

        async def to_client() -> None:
            while data := await server_r.read(65536):
                client_w.write(data)
                await client_w.drain()
            self.ended_upstream += 1
            upstream_ended.set()
            if self._holding:
                self._held.add(client_w)
            else:
                client_w.transport.abort()

        async def to_server() -> None:
            while data := await client_r.read(65536):
                if upstream_ended.is_set():
                    break  # writing to a closed socket: the reset, and the close with it
                server_w.write(data)
                await server_w.drain()
            client_w.transport.abort()
            server_w.close()

        for pump in (to_client(), to_server()):
            task = asyncio.ensure_future(pump)
            self._tasks.add(task)


# --- RabbitMQ -------------------------------------------------------------------------


def with_vhost(amqp_url: str, vhost: str) -> str:
    parts = urlsplit(amqp_url)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


@contextmanager
def rabbit_vhost(amqp_url: str, management_url: str | None) -> Iterator[str]:
    """A fresh vhost for one test session, so tests never meet a running stack's queues.

    Made through the management API when it answers, else with rabbitmqctl; if neither
    can, the tests share the URL's own vhost (and say so)."""
    name = f"saga-test-{uuid.uuid4().hex[:8]}"
    parts = urlsplit(amqp_url)
    user, password = parts.username or "guest", parts.password or "guest"
    made = _management(management_url, user, password, "PUT", f"/api/vhosts/{quote(name, safe='')}")
    if made:
        _management(
            management_url,
            user,
            password,
            "PUT",
            f"/api/permissions/{quote(name, safe='')}/{quote(user, safe='')}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )

        def delete() -> object:
            path = f"/api/vhosts/{quote(name, safe='')}"
            return _management(management_url, user, password, "DELETE", path)

    elif shutil.which("rabbitmqctl") and _ctl("add_vhost", name):
        _ctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
        delete = lambda: _ctl("delete_vhost", name)  # noqa: E731
    else:
        print("tests: could not create a RabbitMQ vhost; using the URL's own", file=sys.stderr)
        yield amqp_url
        return
    try:
        yield with_vhost(amqp_url, name)
    finally:
        delete()


@dataclass(frozen=True)
class Broker:
    """A vhost of the tests' own, with the system's broker users provisioned on it: each
    with this run's prefix, a random password and exactly its permissions
    (contracts.access), and the topology of every saga in the vhost (tools.broker)."""

    admin_url: str
    prefix: str
    passwords: dict[str, str]
    management_url: str | None = None

    def url(self, role: str) -> str:
        """The URL of the broker user of `role` (`payment`, `client`, `operator`, ...)."""
        parts = urlsplit(self.admin_url)
        user = quote(f"{self.prefix}{role}", safe="")
        password = quote(self.passwords[role], safe="")
        host = f"{parts.hostname}:{parts.port or 5672}"
        return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))

    @property
    def vhost(self) -> str:
        return unquote(urlsplit(self.admin_url).path.lstrip("/")) or "/"


async def publish_as(
    broker: Broker,
    role: str,
    body: bytes,
    routing_key: str,
    *,
    exchange: str = "saga.events",
    stamped: bool = True,
    **properties: Any,
) -> None:
    """Publish `body` as the broker user of `role`, with its `user_id` (unless not
    `stamped`), persistent; fails as the broker refuses it."""
    import aio_pika

    connection = await aio_pika.connect(broker.url(role))
    async with connection:
        channel = await connection.channel()
        target = await channel.get_exchange(exchange, ensure=False)
        if stamped:
            properties.setdefault("user_id", f"{broker.prefix}{role}")
        properties.setdefault("delivery_mode", aio_pika.DeliveryMode.PERSISTENT)
        await target.publish(aio_pika.Message(body, **properties), routing_key=routing_key)


def as_producer(event: Any, broker: Broker) -> Any:
    """`event` as an AMQP message its producer would publish: persistent, typed, with its
    message id and the producer's `user_id` (for tests that publish many on one channel)."""
    import aio_pika

    from contracts import encode

    return aio_pika.Message(
        encode(event),
        message_id=str(event.message_id),
        type=event.type,
        user_id=f"{broker.prefix}{event.producer}",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


@contextmanager
def provisioned(admin_url: str, management_url: str) -> Iterator[Broker]:
    """Provision the broker users of this run on the vhost `admin_url` names (its user
    must be an administrator); delete them afterwards."""
    parts = urlsplit(admin_url)
    management = Management(
        management_url, unquote(parts.username or "guest"), unquote(parts.password or "guest")
    )
    broker = Broker(
        admin_url=admin_url,
        prefix=f"t{uuid.uuid4().hex[:6]}-",
        passwords={user.role: uuid.uuid4().hex for user in broker_users()},
        management_url=management_url,
    )
    deadline = time.monotonic() + 90  # a broker just started serves AMQP before its API
    while True:
        try:
            management.call("GET", "/api/overview")
            break
        except (urllib.error.URLError, OSError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    apply(management, broker.vhost, broker.passwords, broker.prefix)
    try:
        yield broker
    finally:
        delete_users(management, broker.prefix)


def _management(
    base: str | None, user: str, password: str, method: str, path: str, body: Any = None
) -> bool:
    return _call_management(base, user, password, method, path, body) is not None


def management_get(base: str | None, user: str, password: str, path: str) -> Any | None:
    """What RabbitMQ's management API answers to GET `path` (parsed JSON), or None if it
    does not answer."""
    return _call_management(base, user, password, "GET", path)


def _call_management(
    base: str | None, user: str, password: str, method: str, path: str, body: Any = None
) -> Any | None:
    if not base:
        return None
    data = json.dumps(body or {}).encode() if method == "PUT" else None
    request = urllib.request.Request(base.rstrip("/") + path, data=data, method=method)
    request.add_header(
        "Authorization", "Basic " + b64encode(f"{user}:{password}".encode()).decode()
    )
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = response.read()
    except (urllib.error.URLError, OSError):
        return None
    try:
        return json.loads(answer) if answer else {}
    except ValueError:
        return None


def _ctl(*args: str) -> bool:
    try:
        return (
            subprocess.run(["rabbitmqctl", *args], capture_output=True, timeout=60).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def management_publish(
    management_url: str,
    vhost: str,
    routing_key: str,
    payload: str,
    *,
    user: str = "guest",
    password: str = "guest",
    properties: dict[str, Any] | None = None,
    exchange: str = "saga.events",
) -> dict[str, Any]:
    """Publish exactly as the management UI's "Publish message" form does: no properties
    (so no content type, and delivery mode 1: not persistent) but the `properties` (and
    headers among them) typed into it, logged in as `user`."""
    request = urllib.request.Request(
        f"{management_url.rstrip('/')}/api/exchanges/{quote(vhost, safe='')}/"
        f"{quote(exchange, safe='')}/publish",
        data=json.dumps(
            {
                "properties": properties or {},
                "routing_key": routing_key,
                "payload": payload,
                "payload_encoding": "string",
            }
        ).encode(),
        method="POST",
    )
    request.add_header(
        "Authorization", "Basic " + b64encode(f"{user}:{password}".encode()).decode()
    )
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


# --- PostgreSQL -----------------------------------------------------------------------


def database_url(server_url: str, name: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path="/" + name))


async def drop_databases(server_url: str, names: list[str]) -> None:
    parts = urlsplit(server_url)
    conn = await asyncpg.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password,
        database="postgres",
    )
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        # The roles make_stack gave them (test_<suffix>_<service>_owner/_app).
        suffixes = {name.rsplit("_", 1)[-1] for name in names if name.startswith("test_")}
        for suffix in suffixes:
            for row in await conn.fetch(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)", f"test_{suffix}_"
            ):
                await conn.execute(f'DROP ROLE IF EXISTS "{row["rolname"]}"')
    finally:
        await conn.close()


async def fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    parts = urlsplit(url)
    conn = await asyncpg.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password,
        database=parts.path.lstrip("/"),
    )
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


# --- the services as processes --------------------------------------------------------


@dataclass
class Stack:
    """The services and the history running as separate processes, and where to reach them."""

    broker: Broker
    database_urls: dict[str, str]
    ports: dict[str, int]
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def amqp_url(self) -> str:
        """The client's URL: what starts sagas and watches events."""
        return self.broker.url("client")

    @property
    def operator_url(self) -> str:
        return self.broker.url("operator")

    @property
    def order_api(self) -> str:
        return f"http://127.0.0.1:{self.ports['order']}"

    @property
    def fare_api(self) -> str:
        return f"http://127.0.0.1:{self.ports['fare']}"

    @property
    def history_url(self) -> str:
        """The saga history (recorder): API, web page and /metrics."""
        return f"http://127.0.0.1:{self.ports['saga_log']}"

    def health(self, service: str) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.ports[service]}/health", timeout=2
            ) as r:
                result: dict[str, Any] = json.loads(r.read())
                return result
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def start(
        self, service: str, *, name: str | None = None, timeout: float = 60.0, **env_extra: str
    ) -> None:
        """Start `service` as a process called `name` (a second replica needs a new name)."""
        name = name or service
        self.ports.setdefault(name, free_port())
        env = {**os.environ, **self.env, **env_extra}
        env[f"{ENV_PREFIX[service]}_HTTP_PORT"] = str(self.ports[name])
        self.logs[name] = ARTIFACTS / f"{name}-{self.ports[name]}.log"
        self.logs[name].parent.mkdir(exist_ok=True)
        log = self.logs[name].open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", MODULES[service]], env=env, stdout=log, stderr=log, cwd=ROOT
        )
        deadline = time.monotonic() + timeout
        while self.health(name) is None:
            if self.processes[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{self.tail(name)}")
            time.sleep(0.1)

    def kill(self, name: str) -> None:
        """SIGKILL: no clean-up, no ack, no graceful shutdown."""
        process = self.processes.pop(name, None)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def stop(self, service: str) -> None:
        process = self.processes.pop(service, None)
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self) -> None:
        for service in list(self.processes):
            self.stop(service)

    def tail(self, service: str, lines: int = 40) -> str:
        path = self.logs.get(service)
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def operator_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """The operator tools (`python -m saga_log ...`), as the operator user."""
    return subprocess.run(
        [sys.executable, "-m", "saga_log", *args, "--amqp-url", stack.operator_url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def make_stack(
    broker: Broker, pg_server_url: str, *, faults: str = "seed", **extra_env: str
) -> Stack:
    """A stack of the five services and the saga history, not started yet."""
    suffix = uuid.uuid4().hex[:8]
    # Each service's database with its two roles (tools.database), as `make up` makes
    # them: the service migrates as the owner and runs as a role that may only read and
    # write rows. The tests read the databases as the superuser (database_urls).
    roles = {
        s: DatabaseRoles.of(s, database=f"test_{DATABASES[s]}_{suffix}", prefix=f"test_{suffix}_")
        for s in MODULES
    }
    database_urls = {s: database_url(pg_server_url, roles[s].database) for s in MODULES}
    role_env: dict[str, str] = {}
    for s, made in roles.items():
        owner_password, app_password = uuid.uuid4().hex, uuid.uuid4().hex
        asyncio.run(provision(pg_server_url, made, owner_password, app_password))
        role_env[f"{ENV_PREFIX[s]}_DATABASE_URL"] = role_url(
            pg_server_url, made.database, made.app, app_password
        )
        role_env[f"{ENV_PREFIX[s]}_MIGRATION_DATABASE_URL"] = role_url(
            pg_server_url, made.database, made.owner, owner_password
        )
    env = {
        **{f"{ENV_PREFIX[s]}_AMQP_URL": broker.url(s) for s in MODULES},
        "SAGA_BROKER_USER_PREFIX": broker.prefix,
        "SAGA_FAULTS": faults,
        "SAGA_HTTP_HOST": "127.0.0.1",
        "SAGA_FIELD_KEYS": FIELD_KEYS,
        **role_env,
        **FAST_RETRIES,
        **extra_env,
    }
    return Stack(
        broker=broker,
        database_urls=database_urls,
        ports={s: free_port() for s in MODULES},
        env=env,
    )


@contextmanager
def running_stack(
    broker: Broker,
    pg_server_url: str,
    *,
    services: tuple[str, ...] = (*SERVICES, "saga_log"),
    faults: str = "seed",
    **env: str,
) -> Iterator[Stack]:
    """A stack with `services` started; stopped and its databases dropped afterwards."""
    stack = make_stack(broker, pg_server_url, faults=faults, **env)
    try:
        for service in services:
            stack.start(service)
        yield stack
    finally:
        stack.stop_all()
        names = [url.rsplit("/", 1)[1] for url in stack.database_urls.values()]
        asyncio.run(drop_databases(pg_server_url, names))
