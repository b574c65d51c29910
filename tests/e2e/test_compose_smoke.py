"""The Docker stack as a user starts it: `make up` builds the images and starts RabbitMQ,
one PostgreSQL per service, the five services and the history (SAGA_FAULTS=seed); a happy
and a compensated order and fare then go through it, watched on the mapped RabbitMQ port
and read back from the mapped order and fare APIs and the history; `make down` removes it
all, volumes included, whatever happened.

The stack runs under a compose project name of its own, on host ports picked free here,
so it never meets a stack the user already runs. Skipped when no Docker engine answers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from contracts import FARE
from contracts.samples import (
    EXPECTED,
    FARE_EXPECTED,
    fresh_fare_id,
    fresh_order_id,
    sample_fare,
    sample_order,
)
from saga_log.ops.client import TERMINAL_TYPES, SagaWatcher
from saga_log.ops.env import broker_url, http_headers, local_env
from tests.support import ARTIFACTS, ROOT, eventually, free_port

pytestmark = pytest.mark.docker

PROJECT = os.environ.get("SAGA_SMOKE_PROJECT", "saga-compose-smoke")
#: `make up` builds the three images (a few minutes on a cold cache) and waits for health.
UP_TIMEOUT = 600.0
DOWN_TIMEOUT = 180.0
HEALTH_TIMEOUT = 120.0


@dataclass(frozen=True)
class ComposeStack:
    amqp_port: int
    order_api: str
    fare_api: str
    history_url: str

    @property
    def amqp_url(self) -> str:
        """As the client user, whose password `make up` wrote to .env (there is no guest)."""
        env = {**local_env(ROOT / ".env"), "AMQP_URL": f"amqp://127.0.0.1:{self.amqp_port}/"}
        env.pop("CLIENT_AMQP_URL", None)
        return broker_url("client", env)


def _token() -> dict[str, str]:
    """The HTTP token `make up` wrote to .env (the composed stack asks for it)."""
    headers = http_headers(local_env(ROOT / ".env"))
    assert headers, "make up should have written SAGA_HTTP_TOKEN to .env"
    return headers


def _docker_answers() -> str | None:
    """Why the test cannot run here, or None if it can."""
    if shutil.which("docker") is None:
        return "no docker command on PATH"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if info.returncode != 0:
        reason = (info.stderr or info.stdout).strip().splitlines()
        return (
            "no Docker engine answers (`docker info` failed: "
            + (reason[-1] if reason else f"exit {info.returncode}")
            + ")"
        )
    if _compose_command() is None:
        return "neither `docker compose` (v2) nor `docker-compose` (v1) is installed"
    if shutil.which("make") is None:
        return "no make command on PATH (the test drives `make up` / `make down`)"
    return None


def _compose_command() -> list[str] | None:
    """The compose command the Makefile picks: v2 when present, else v1 (for log dumps)."""
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if probe.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose") is not None:
        return ["docker-compose"]
    return None


def _make(target: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _wait_healthy(url: str, timeout: float) -> None:
    """Poll `url` until it answers 200; fail with the last error after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{url} not healthy within {timeout:.0f} s (last: {last})")


def _save_logs(
    env: dict[str, str],
    *,
    compose: list[str] | None = None,
    artifact: str = "compose-smoke.log",
    timeout: float = 60,
) -> None:
    """The stack's logs into test-artifacts/`artifact`, for a failure to be read after
    `make down`; `compose` is the command that names the stack (`make up`'s by default)."""
    compose = compose or _compose_command()
    if compose is None:
        return
    try:
        logs = subprocess.run(
            [*compose, "logs", "--no-color", "--timestamps"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / artifact).write_text(logs.stdout + logs.stderr)


@pytest.fixture(scope="module")
def compose_stack() -> Iterator[ComposeStack]:
    reason = _docker_answers()
    if reason is not None:
        pytest.skip(reason)

    ports = {
        name: free_port()
        for name in (
            "SAGA_RABBITMQ_HOST_PORT",
            "SAGA_RABBITMQ_UI_HOST_PORT",
            "SAGA_ORDER_HOST_PORT",
            "SAGA_PAYMENT_HOST_PORT",
            "SAGA_INVENTORY_HOST_PORT",
            "SAGA_FARE_HOST_PORT",
            "SAGA_ACCOUNTING_HOST_PORT",
            "SAGA_LOG_HOST_PORT",
        )
    }
    env = {
        **{key: value for key, value in os.environ.items() if key != "COMPOSE_FILE"},
        "COMPOSE_PROJECT_NAME": PROJECT,
        "SAGA_BIND_ADDRESS": "127.0.0.1",
        **{name: str(port) for name, port in ports.items()},
    }
    stack = ComposeStack(
        amqp_port=ports["SAGA_RABBITMQ_HOST_PORT"],
        order_api=f"http://127.0.0.1:{ports['SAGA_ORDER_HOST_PORT']}",
        fare_api=f"http://127.0.0.1:{ports['SAGA_FARE_HOST_PORT']}",
        history_url=f"http://127.0.0.1:{ports['SAGA_LOG_HOST_PORT']}",
    )

    # A stack this test left behind (an interrupted run) would otherwise be reused.
    _make("down", env, DOWN_TIMEOUT)
    try:
        up = _make("up", env, UP_TIMEOUT)
        assert up.returncode == 0, (
            f"`make up` failed (exit {up.returncode}):\n{_tail(up.stdout)}\n{_tail(up.stderr)}"
        )
        _wait_healthy(f"{stack.order_api}/health", HEALTH_TIMEOUT)
        _wait_healthy(f"{stack.fare_api}/health", HEALTH_TIMEOUT)
        yield stack
    finally:
        _save_logs(env)
        down = _make("down", env, DOWN_TIMEOUT)
        if down.returncode != 0:
            # Not an assertion: it would hide the test's own failure. Say it loudly instead.
            print(f"`make down` failed (exit {down.returncode}):\n{_tail(down.stderr)}")


async def _order(order_api: str, order_id: str) -> dict[str, Any]:
    """GET /orders/{order_id} once the saga's outcome is recorded (it is by the time the
    terminal event is out, since the outbox publishes only what has committed)."""
    async with httpx.AsyncClient(base_url=order_api, timeout=5, headers=_token()) as http:

        async def concluded() -> dict[str, Any]:
            response = await http.get(f"/orders/{order_id}")
            if response.status_code != 200:
                return {}
            body: dict[str, Any] = response.json()
            return body if body["saga"]["outcome"] is not None else {}

        return await eventually(concluded, timeout=15)


@pytest.mark.timeout(UP_TIMEOUT + DOWN_TIMEOUT * 2 + 120)
@pytest.mark.parametrize("scenario", ["ok", "3"])
async def test_order_through_the_composed_stack(compose_stack: ComposeStack, scenario: str) -> None:
    expected = EXPECTED[scenario]
    order_id = fresh_order_id(scenario)

    async with SagaWatcher(compose_stack.amqp_url) as watcher:
        await watcher.place(sample_order(scenario, order_id=order_id))
        try:
            events = await watcher.wait(order_id, timeout=60)
        except TimeoutError:
            pytest.fail(f"no terminal event for {order_id}; seen: {watcher.events(order_id)}")

    terminal = [event for event in events if event["type"] in TERMINAL_TYPES]
    assert [event["type"] for event in terminal] == [expected["terminal"]], events
    assert terminal[0]["order_status"] == expected["order_status"], terminal[0]

    order = await _order(compose_stack.order_api, order_id)
    assert order["order_id"] == order_id
    assert order["order_status"] == expected["order_status"], order
    assert order["saga"]["outcome"] == (
        "succeeded" if expected["terminal"] == "OrderSucceeded" else "failed"
    ), order
    assert order["saga"]["compensation_error"] == expected["compensation_error"], order
    assert sorted(order["payment_transactions"]) == expected["payments"], order
    assert sorted(order["inventory_transactions"]) == expected["inventory"], order

    # The saga history in the stack recorded the same story.
    async with httpx.AsyncClient(
        base_url=compose_stack.history_url, timeout=5, headers=_token()
    ) as http:

        async def recorded() -> dict[str, Any]:
            response = await http.get(f"/sagas/{order_id}")
            body: dict[str, Any] = response.json() if response.status_code == 200 else {}
            return body if body and body["saga"]["ended_at"] else {}

        history = await eventually(recorded, timeout=15)
    assert history["saga"]["status"] == (
        "succeeded" if expected["terminal"] == "OrderSucceeded" else "failed"
    )
    assert history["timeline"][-1]["type"] == expected["terminal"]


@pytest.mark.timeout(UP_TIMEOUT + DOWN_TIMEOUT * 2 + 120)
@pytest.mark.parametrize("scenario", ["ok", "fail_credit"])
async def test_fare_through_the_composed_stack(compose_stack: ComposeStack, scenario: str) -> None:
    expected = FARE_EXPECTED[scenario]
    fare_id = fresh_fare_id()
    async with SagaWatcher(compose_stack.amqp_url) as watcher:
        await watcher.start(FARE, sample_fare(scenario, fare_id=fare_id))
        try:
            events = await watcher.wait(fare_id, timeout=60)
        except TimeoutError:
            pytest.fail(f"no terminal event for {fare_id}; seen: {watcher.events(fare_id)}")
    terminal = [event for event in events if event["type"] in TERMINAL_TYPES]
    assert [event["type"] for event in terminal] == [expected["terminal"]], events

    async with httpx.AsyncClient(timeout=5, headers=_token()) as http:

        async def concluded() -> dict[str, Any]:
            response = await http.get(f"{compose_stack.fare_api}/fares/{fare_id}")
            body: dict[str, Any] = response.json() if response.status_code == 200 else {}
            return body if body and body["saga"]["outcome"] != "running" else {}

        fare = await eventually(concluded, timeout=15)

        async def recorded() -> dict[str, Any]:
            response = await http.get(f"{compose_stack.history_url}/sagas/{fare_id}")
            body: dict[str, Any] = response.json() if response.status_code == 200 else {}
            return body if body and body["saga"]["ended_at"] else {}

        history = await eventually(recorded, timeout=15)
    assert fare["fareStatus"] == expected["fare_status"] and fare["cardLast4"] == "2424"
    assert history["saga"]["saga_type"] == "fare"
    assert history["saga"]["status"] == expected["history"]


async def test_the_composed_stack_has_no_guest_no_superuser_and_asks_for_its_token(
    compose_stack: ComposeStack,
) -> None:
    import aio_pika

    # No guest on the broker: the default credentials are refused.
    with pytest.raises(aio_pika.exceptions.AMQPConnectionError):
        await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{compose_stack.amqp_port}/")
    # The HTTP surfaces ask for the token; /health does not.
    async with httpx.AsyncClient(timeout=5) as http:
        for url in (
            f"{compose_stack.history_url}/sagas",
            f"{compose_stack.history_url}/",
            f"{compose_stack.order_api}/orders/4000",
        ):
            refused = await http.get(url)
            assert refused.status_code == 401, url
        assert (await http.get(f"{compose_stack.order_api}/health")).status_code == 200
    # Each service runs as its database's runtime role, not as a superuser.
    sessions = await asyncio.to_thread(_order_db_sessions)
    assert "order_app:false" in sessions, sessions
    assert not {s for s in sessions if s.endswith(":true")}, sessions


def _order_db_sessions() -> set[str]:
    """`user:is_superuser` of each client session on the order database but this one."""
    compose = _compose_command()
    assert compose is not None
    query = (
        "SELECT u.usename || ':' || u.usesuper FROM pg_stat_activity a "
        "JOIN pg_user u ON u.usesysid = a.usesysid "
        "WHERE a.datname = 'orders' AND a.backend_type = 'client backend' "
        "AND a.pid <> pg_backend_pid()"
    )
    found = subprocess.run(
        [
            *compose, "exec", "-T", "order-db", "sh", "-c",
            f'PGPASSWORD=$POSTGRES_PASSWORD psql -U postgres -d orders -Atc "{query}"',
        ],
        cwd=ROOT,
        env={**os.environ, "COMPOSE_PROJECT_NAME": PROJECT},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    return set(found.stdout.split())
